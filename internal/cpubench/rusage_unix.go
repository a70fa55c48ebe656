//go:build unix

package cpubench

import "syscall"

// processCPU returns the process's user plus system CPU time in
// nanoseconds, or -1 if the system cannot tell.
func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return -1
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
