// Package cpubench reports the CPU time a benchmark's operations take, next
// to the wall time testing.B measures. On a machine shared with other
// work, wall time per operation mostly measures the others; the process's
// CPU time (user and system, every goroutine, the garbage collector
// included) is what an operation costs push2d.
package cpubench

import "testing"

// Start begins measuring; the function it returns, called once the
// benchmark loop is done, reports the process's CPU time since Start per
// operation as "cpu-ns/op" and returns it (0 where the system cannot
// tell). Work between Start and the loop counts too, so call Start right
// before the loop.
func Start(b *testing.B) (stop func() float64) {
	t0 := processCPU()
	return func() float64 {
		if t0 < 0 || b.N == 0 {
			return 0
		}
		perOp := float64(processCPU()-t0) / float64(b.N)
		b.ReportMetric(perOp, "cpu-ns/op")
		return perOp
	}
}
