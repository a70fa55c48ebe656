package main

import (
	"context"
	"encoding/xml"
	"errors"
	"math/rand/v2"
	"net"
	"strings"
	"time"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/component"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stream"
)

// run keeps the component connection up until ctx ends: connect, announce
// the features, serve; on any failure wait (exponential back-off with
// jitter, between reconnect_min and reconnect_max) and connect again.
func (d *daemon) run(ctx context.Context) {
	addr := jid.MustParse(d.cfg.Component.JID)
	wait := d.cfg.Component.ReconnectMin.Duration
	standby := false
	for ctx.Err() == nil {
		began := time.Now()
		err := d.connectAndServe(ctx, addr)
		if ctx.Err() != nil {
			return
		}
		if isConflict(err) {
			// Another push2d (on the same shared store) holds the
			// component connection: Prosody accepts one per component JID
			// and refuses the next with a conflict stream error. Stand by
			// and try at a steady pace, so that this one takes over soon
			// after the other goes.
			if !standby {
				d.log.Info("the server has another connection for this component (another push2d is active); standing by", "address", d.cfg.Component.Address, "retry_every", standbyRetry(d.cfg.Component))
			}
			standby = true
			select {
			case <-ctx.Done():
				return
			case <-time.After(standbyRetry(d.cfg.Component)):
			}
			continue
		}
		if standby {
			standby = false
			wait = d.cfg.Component.ReconnectMin.Duration
		}
		if time.Since(began) > 30*time.Second {
			wait = d.cfg.Component.ReconnectMin.Duration // it was up for a while: start over
		}
		// The error never contains the secret: mellium reports the
		// handshake failing, not its input.
		d.log.Warn("component connection lost; reconnecting", "address", d.cfg.Component.Address, "err", err, "in", wait.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait/2 + rand.N(wait/2+1)):
		}
		wait = min(wait*2, d.cfg.Component.ReconnectMax.Duration)
	}
}

func (d *daemon) connectAndServe(ctx context.Context, addr jid.JID) error {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var dialer net.Dialer
	conn, err := dialer.DialContext(dctx, "tcp", d.cfg.Component.Address)
	if err != nil {
		return err
	}
	sess, err := component.NewSession(dctx, addr, []byte(d.cfg.Component.Secret), conn)
	if err != nil {
		conn.Close()
		return err
	}
	d.bridge.Connected()
	d.setSession(sess)
	d.log.Info("connected to the XMPP server", "component", addr.String(), "address", d.cfg.Component.Address)
	defer func() {
		d.setSession(nil)
		d.bridge.Disconnected()
	}()

	stop := context.AfterFunc(ctx, func() { sess.Close() })
	defer stop()
	go func() {
		d.bridge.AnnounceFeatures(ctx)
		d.bridge.AnnounceAccounts(ctx)
	}()
	err = sess.Serve(xmpp.HandlerFunc(func(t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
		return d.bridge.HandleXML(t, start)
	}))
	sess.Close()
	conn.Close()
	if err == nil {
		err = errConnectionClosed
	}
	return err
}

// isConflict reports whether the server refused the connection because
// another one holds the component JID (a <conflict/> stream error; Prosody
// says "Component already connected"). mellium reports a stream error the
// server sends during the handshake as the error's text only, so both
// forms are recognised.
func isConflict(err error) bool {
	return err != nil && (errors.Is(err, stream.Conflict) || strings.Contains(err.Error(), "conflict"))
}

// standbyRetry is how often a standing-by push2d tries to take the
// component connection: reconnect_min, but at least a second (every try is
// a handshake the server logs) and at most reconnect_max.
func standbyRetry(c ComponentConfig) time.Duration {
	return min(max(c.ReconnectMin.Duration, time.Second), max(c.ReconnectMax.Duration, c.ReconnectMin.Duration))
}

type closedError struct{}

func (closedError) Error() string { return "the server closed the stream" }

var errConnectionClosed = closedError{}
