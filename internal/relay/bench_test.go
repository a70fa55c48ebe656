package relay

import (
	"bytes"
	"context"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/push2/push2/internal/relay/relaytest"
)

// benchServer is a push service that answers 201 at once (HTTP/2 over
// TLS on 127.0.0.1), so the benchmarks measure the relay, not the receiver.
func benchServer(b *testing.B) *httptest.Server {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	b.Cleanup(srv.Close)
	return srv
}

func benchRelay(b *testing.B, srv *httptest.Server) *Relay {
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	tlsc := srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	tlsc.RootCAs = pool
	r := New(Config{TLS: tlsc, AllowNets: loopback, Total: 256, PerHost: 64})
	b.Cleanup(r.Close)
	return r
}

// BenchmarkRelayPush: one encrypted notification with a VAPID token,
// relayed to a local push service, one at a time: the time per op is the
// relay's latency including the HTTP round trip (compare
// BenchmarkBareHTTPPost for the round trip alone).
func BenchmarkRelayPush(b *testing.B) {
	srv := benchServer(b)
	r := benchRelay(b, srv)
	sub, _ := relaytest.NewSubscription()
	n := notification(b, sub, srv.URL+"/sub", srv.URL, "normal", bytes.Repeat([]byte("x"), 400), time.Now())
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if res := r.Push(context.Background(), n); res.Err != nil {
			b.Fatal(res.Err)
		}
	}
}

// BenchmarkRelayPushParallel: the same with many notifications in flight:
// ops/s is the relay's throughput to one push service.
func BenchmarkRelayPushParallel(b *testing.B) {
	srv := benchServer(b)
	r := benchRelay(b, srv)
	sub, _ := relaytest.NewSubscription()
	n := notification(b, sub, srv.URL+"/sub", srv.URL, "normal", bytes.Repeat([]byte("x"), 400), time.Now())
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if res := r.Push(context.Background(), n); res.Err != nil {
				b.Error(res.Err)
				return
			}
		}
	})
}

// BenchmarkBareHTTPPost: a POST of a body of the same size over the same
// kind of connection with a plain HTTP/2 client: the baseline the relay's
// added latency is measured against.
func BenchmarkBareHTTPPost(b *testing.B) {
	srv := benchServer(b)
	c := srv.Client()
	body := bytes.Repeat([]byte("x"), 600)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		resp, err := c.Post(srv.URL+"/sub", "application/octet-stream", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
	}
}
