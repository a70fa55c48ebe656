// Command push2relay is push2's Web Push relay as a standalone XEP-0114
// component: it connects to any XMPP server as a push service JID, turns
// every Push 2.0 notification it receives from an allowed server into an
// RFC 8030 request (package internal/relay), and answers failures with a
// stanza error on the notification's message. docs/relay.md describes it.
package main

import (
	"context"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/BurntSushi/toml"
	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/component"
	"mellium.im/xmpp/jid"

	"github.com/push2/push2/engine/stanza"
	"github.com/push2/push2/internal/relay"
)

// Config is push2relay's configuration file (TOML, docs/relay.md).
type Config struct {
	Component struct {
		JID        string `toml:"jid"`
		Address    string `toml:"address"`
		Secret     string `toml:"secret"`
		SecretFile string `toml:"secret_file"`
	} `toml:"component"`
	Relay struct {
		// Senders are the XMPP server domains whose notifications are
		// relayed; everyone else gets not-allowed.
		Senders []string `toml:"senders"`
		relay.Settings
	} `toml:"relay"`
	Log struct {
		Level string `toml:"level"`
	} `toml:"log"`
}

func loadConfig(path string) (Config, relay.Config, error) {
	var c Config
	c.Component.Address = "127.0.0.1:5347"
	md, err := toml.DecodeFile(path, &c)
	if err != nil {
		return c, relay.Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		return c, relay.Config{}, fmt.Errorf("config %s: unknown setting %q", path, und[0].String())
	}
	var errs []error
	if j, err := jid.Parse(c.Component.JID); err != nil || c.Component.JID == "" || j.Localpart() != "" || j.Resourcepart() != "" {
		errs = append(errs, errors.New("component.jid must be a domain JID such as webpush.example.org"))
	}
	if c.Component.SecretFile != "" {
		b, err := os.ReadFile(c.Component.SecretFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("component.secret_file: %w", err))
		}
		c.Component.Secret = strings.TrimSpace(string(b))
	}
	if c.Component.Secret == "" {
		errs = append(errs, errors.New("component.secret (or secret_file) is required"))
	}
	if len(c.Relay.Senders) == 0 {
		errs = append(errs, errors.New("relay.senders must list the XMPP server domains allowed to use this relay"))
	}
	for i, d := range c.Relay.Senders {
		c.Relay.Senders[i] = strings.ToLower(strings.TrimSpace(d))
	}
	rc, err := c.Relay.Settings.Config("relay")
	if err != nil {
		errs = append(errs, err)
	}
	return c, rc, errors.Join(errs...)
}

func main() {
	// `push2relay check [-config FILE]` reads and checks the configuration
	// (and the secret file it names) and exits: 0 when it is usable, 2
	// with the problems otherwise. It connects to nothing.
	args, check := os.Args[1:], false
	if len(args) > 0 && args[0] == "check" {
		args, check = args[1:], true
	}
	fs := flag.NewFlagSet("push2relay", flag.ExitOnError)
	path := fs.String("config", "/etc/push2/push2relay.toml", "configuration file")
	fs.Parse(args)
	cfg, rc, err := loadConfig(*path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "push2relay:", err)
		os.Exit(2)
	}
	if check {
		fmt.Printf("push2relay: configuration ok (component %s, server %s, senders %v)\n", cfg.Component.JID, cfg.Component.Address, cfg.Relay.Senders)
		return
	}
	var level slog.Level
	level.UnmarshalText([]byte(cfg.Log.Level))
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	rc.Logger = log
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	s := &server{cfg: cfg, relay: relay.New(rc), log: log, slots: make(chan struct{}, 4*max(rc.Total, relay.DefaultTotal))}
	log.Info("push2relay starting", "component", cfg.Component.JID, "server", cfg.Component.Address, "senders", cfg.Relay.Senders)
	s.run(ctx)
	s.wg.Wait()
	s.relay.Close()
}

type server struct {
	cfg   Config
	relay *relay.Relay
	log   *slog.Logger
	slots chan struct{} // bounds the notifications in flight; the stream is read no faster
	wg    sync.WaitGroup
}

// run keeps the component connection up until ctx ends, reconnecting with
// back-off.
func (s *server) run(ctx context.Context) {
	wait := 500 * time.Millisecond
	for ctx.Err() == nil {
		began := time.Now()
		err := s.serve(ctx)
		if ctx.Err() != nil {
			return
		}
		if time.Since(began) > 30*time.Second {
			wait = 500 * time.Millisecond
		}
		s.log.Warn("component connection lost; reconnecting", "address", s.cfg.Component.Address, "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait/2 + rand.N(wait/2+1)):
		}
		wait = min(wait*2, 30*time.Second)
	}
}

func (s *server) serve(ctx context.Context) error {
	me := jid.MustParse(s.cfg.Component.JID)
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(dctx, "tcp", s.cfg.Component.Address)
	if err != nil {
		return err
	}
	sess, err := component.NewSession(dctx, me, []byte(s.cfg.Component.Secret), conn)
	if err != nil {
		conn.Close()
		return err
	}
	s.log.Info("connected to the XMPP server", "component", me.String())
	stop := context.AfterFunc(ctx, func() { sess.Close() })
	defer stop()
	var wmu sync.Mutex
	reply := func(el *stanza.Element) {
		wmu.Lock()
		defer wmu.Unlock()
		if err := sess.Send(context.Background(), el.TokenReader()); err != nil {
			s.log.Warn("could not answer a notification", "id", el.AttrValue("id"), "err", err)
		}
	}
	err = sess.Serve(xmpp.HandlerFunc(func(t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
		st, err := stanza.ReadElement(*start, t)
		if err != nil {
			s.log.Warn("unreadable stanza", "kind", start.Name.Local, "err", err)
			return nil
		}
		switch st.Name.Local {
		case "message":
			s.slots <- struct{}{}
			s.wg.Add(1)
			go func() {
				defer func() { <-s.slots; s.wg.Done() }()
				if out := s.relay.HandleMessage(ctx, me.String(), s.cfg.Relay.Senders, st); out != nil {
					reply(out)
				}
			}()
		case "iq":
			if typ := st.AttrValue("type"); typ == "get" || typ == "set" {
				out := relay.ErrorReply(me.String(), st, stanza.ServiceUnavailable())
				out.Name.Local = "iq"
				reply(out)
			}
		}
		return nil
	}))
	sess.Close()
	conn.Close()
	if err == nil {
		err = errors.New("the server closed the stream")
	}
	return err
}
