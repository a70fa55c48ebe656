package engine

import (
	"container/heap"
	"time"
)

// The outbox keeps each entry in exactly one of three queues, so that a
// round touches only the entries it acts on (O(log n) each), never the
// whole outbox:
//
//	waiting  pending entries by Due: the next one to fall due on top
//	ready    due entries by Created: sent oldest first
//	sent     sent entries by SentAt: the next error window to end on top
//	handed   handed to a server that confirms routing (Outbox.AwaitRouted),
//	         not confirmed yet, by hand-over time (in SentAt, kept in
//	         memory only): the oldest on top
//
// An entry being handed to the Sender is in none of them (item.q == nil).

// item is an entry of the outbox with its place in a queue.
type item struct {
	e   OutboxEntry
	q   *queue // the queue holding the item; nil while it is being sent
	idx int    // its index in q.items
	// routed: the server confirmed it routed the notification
	// (Outbox.Routed) while it was still being handed over.
	routed bool
	// deferred: how many times in a row the Sender answered ErrNotReady.
	deferred int
}

// queue is a binary heap of items ordered by before.
type queue struct {
	items  []*item
	before func(a, b *OutboxEntry) bool
}

func byDue(a, b *OutboxEntry) bool {
	if !a.Due.Equal(b.Due) {
		return a.Due.Before(b.Due)
	}
	return byCreated(a, b)
}

func byCreated(a, b *OutboxEntry) bool {
	if !a.Created.Equal(b.Created) {
		return a.Created.Before(b.Created)
	}
	return a.ID < b.ID
}

func bySent(a, b *OutboxEntry) bool {
	if !a.SentAt.Equal(b.SentAt) {
		return a.SentAt.Before(b.SentAt)
	}
	return a.ID < b.ID
}

func (q *queue) Len() int           { return len(q.items) }
func (q *queue) Less(i, j int) bool { return q.before(&q.items[i].e, &q.items[j].e) }
func (q *queue) Swap(i, j int) {
	q.items[i], q.items[j] = q.items[j], q.items[i]
	q.items[i].idx, q.items[j].idx = i, j
}
func (q *queue) Push(x any) {
	it := x.(*item)
	it.q, it.idx = q, len(q.items)
	q.items = append(q.items, it)
}
func (q *queue) Pop() any {
	n := len(q.items) - 1
	it := q.items[n]
	q.items[n] = nil
	q.items = q.items[:n]
	it.q, it.idx = nil, -1
	return it
}

func (q *queue) push(it *item) { heap.Push(q, it) }

// top returns the first item without removing it, or nil.
func (q *queue) top() *item {
	if len(q.items) == 0 {
		return nil
	}
	return q.items[0]
}

func (q *queue) pop() *item { return heap.Pop(q).(*item) }

// unqueue takes it out of whichever queue holds it.
func unqueue(it *item) {
	if it.q != nil {
		heap.Remove(it.q, it.idx)
	}
}

// earliest returns the earlier of t and u, ignoring a zero u.
func earliest(t, u time.Time) time.Time {
	if !u.IsZero() && u.Before(t) {
		return u
	}
	return t
}
