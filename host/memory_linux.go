package host

import (
	"sync"
	"syscall"

	"github.com/tetratelabs/wazero/experimental"
)

// guestMemory backs one instance's linear memory with its own anonymous
// mapping of the memory's maximum size (at most Config.MemoryLimitPages),
// instead of wazero's default Go slice (sdk/ABI.md §14 "Memory").
//
// With the Go slice, every memory.grow appends: the memory is copied, the
// old copy is garbage, and what a closed instance used goes back to the
// system only when the Go scavenger gets to it, minutes later. Here growing
// touches nothing (pages become resident when the guest writes them) and
// closing an instance unmaps its memory at once.
//
// Invariant: the mapping is unmapped only when no call runs on the
// instance. wazero frees an instance's memory when it is closed, which can
// happen while a guest runs (Host.Close closes the runtime under calls in
// flight); unmapping then would make the guest fault. enter and leave
// bracket every use of the instance by the host, and Free during one defers
// the unmap to the last leave.
type guestMemory struct {
	mu     sync.Mutex
	buf    []byte // the whole mapping, or a Go slice when mmap failed
	max    uint64
	busy   int
	freed  bool
	mapped bool
}

// newGuestMemory returns an allocator for one instantiation, which reports
// the memory it made to *out. The memory starts busy (the instantiation
// uses it); the caller leaves it when InstantiateModule returns.
func newGuestMemory(out **guestMemory) experimental.MemoryAllocator {
	return experimental.MemoryAllocatorFunc(func(_, max uint64) experimental.LinearMemory {
		g := &guestMemory{busy: 1, max: max}
		if max > 0 {
			b, err := syscall.Mmap(-1, 0, int(max), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON|syscall.MAP_NORESERVE)
			if err == nil {
				g.buf, g.mapped = b, true
			}
		}
		*out = g
		return g
	})
}

// Reallocate implements experimental.LinearMemory: a mapped memory never
// moves; without a mapping (a zero maximum, or mmap failed) it grows like
// wazero's own.
func (g *guestMemory) Reallocate(size uint64) []byte {
	if size > g.max {
		return nil
	}
	if !g.mapped && size > uint64(len(g.buf)) {
		g.buf = append(g.buf, make([]byte, size-uint64(len(g.buf)))...)
	}
	return g.buf[:size:size]
}

// Free implements experimental.LinearMemory.
func (g *guestMemory) Free() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.freed = true
	if g.busy == 0 {
		g.unmap()
	}
}

func (g *guestMemory) enter() {
	if g != nil {
		g.mu.Lock()
		g.busy++
		g.mu.Unlock()
	}
}

func (g *guestMemory) leave() {
	if g != nil {
		g.mu.Lock()
		g.busy--
		if g.busy == 0 && g.freed {
			g.unmap()
		}
		g.mu.Unlock()
	}
}

func (g *guestMemory) unmap() {
	if g.mapped {
		_ = syscall.Munmap(g.buf)
		g.mapped = false
	}
	g.buf = nil
}
