package bridgeproto

import "github.com/push2/push2/engine/stanza"

// eventJob is one event for a worker.
type eventJob struct {
	domain string
	ev     *stanza.Element
}

// dispatchEvent hands an event to one of Config.Workers long-lived
// workers, blocking while all of them are busy (back-pressure: the stream
// is read no faster than evaluations finish). A goroutine per event cost
// push2d a fifth of its CPU per pushed message on a burst through Prosody
// (issue 12 goal 2): its creation, and above all growing each new
// goroutine's stack again to the depth of an evaluation and a store write.
// The workers start with the first event and stay for the process's life.
func (s *Service) dispatchEvent(domain string, ev *stanza.Element) {
	s.startW.Do(func() {
		for range s.cfg.Workers {
			go s.eventWorker()
		}
	})
	s.inflight.Add(1)
	s.events <- eventJob{domain: domain, ev: ev}
}

func (s *Service) eventWorker() {
	for j := range s.events {
		s.handleEvent(j.domain, j.ev)
		s.inflight.Done()
	}
}
