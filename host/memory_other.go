//go:build !linux

package host

import "github.com/tetratelabs/wazero/experimental"

// guestMemory is the Linux mapping of memory_linux.go; elsewhere instances
// use wazero's default Go-slice memory, and the methods do nothing.
type guestMemory struct{}

func newGuestMemory(**guestMemory) experimental.MemoryAllocator { return nil }

func (*guestMemory) enter() {}
func (*guestMemory) leave() {}
