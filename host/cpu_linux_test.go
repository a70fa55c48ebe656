package host

import (
	"syscall"
	"time"
)

// threadCPU is the CPU time the calling OS thread has used
// (getrusage(RUSAGE_THREAD), which package syscall does not name).
func threadCPU() time.Duration {
	const rusageThread = 1
	var ru syscall.Rusage
	if syscall.Getrusage(rusageThread, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
