package casetest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/stanza"
)

// NSCases is the namespace of test case files (sdk/ABI.md §13 "Test
// cases"). Case files may also use no namespace at all.
const NSCases = "urn:push2:cases:0"

// A case file is XML:
//
//	<cases xmlns='urn:push2:cases:0'>
//	  <context account='juliet@example.com' trigger='offline'/>   defaults for every case
//	  <enable xmlns='urn:xmpp:push2:0'>…</enable>                  default registration
//	  <case name='a VIP pushes high'>
//	    <enable xmlns='urn:xmpp:push2:0'>…</enable>               optional, overrides the default
//	    <context now='2024-05-01T23:30:00Z' nick='jul'/>          attributes override the defaults
//	    <activity session='laptop' seconds-ago='30'/>             optional, for <grace/>
//	    <stanza><message from='boss@example.com/x' type='chat'><body>hi</body></message></stanza>
//	    <expect push='true' priority='high' voip='false' reason='vip'>
//	      <present path='{urn:example:x}payload'/>                 under <notification/>
//	      <absent path='…'/>
//	      <text path='…' contains='…'>exact text</text>
//	      <attr path='…' name='key' value='…'/>
//	      <decrypt path='…' ua-private='base64' auth-secret='base64'>
//	        <json key='type'>message</json>
//	        <json key='body' absent='true'/>
//	        <contains>substring of the plaintext</contains>
//	      </decrypt>
//	    </expect>
//	  </case>
//	  <case name='a broken registration is refused'>
//	    <enable …/>
//	    <expect enable-error='bad-request' text='substring'/>
//	  </case>
//	</cases>
//
// Context attributes: account, trigger (offline, hibernated, ack-delayed,
// archived, groupchat), archive-id, archive-by, nick, now (RFC 3339).
// Elements inside <stanza/> with no namespace of their own are in
// jabber:client. Paths are those of push2.el_find (sdk/ABI.md §6).

// caseFiles lists the *.xml files of dir in name order, or dir itself if it
// is a file.
func caseFiles(dir string) ([]string, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return []string{dir}, nil
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.xml"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no *.xml case files in %s", dir)
	}
	sort.Strings(files)
	return files, nil
}

type testCase struct {
	file, name, id string
	enable         *stanza.Element
	ctx            engine.Context
	activity       []*stanza.Element
	stanza         *stanza.Element
	expect         *stanza.Element
}

func isCasesNS(e *stanza.Element) bool { return e.Name.Space == NSCases || e.Name.Space == "" }

// parseCaseFile reads one case file; every error is a *FileError.
func parseCaseFile(path string) ([]*testCase, error) {
	bad := func(err error) ([]*testCase, error) { return nil, &FileError{File: path, Err: err} }
	b, err := os.ReadFile(path)
	if err != nil {
		return bad(err)
	}
	root, err := stanza.Parse(b)
	if err != nil {
		return bad(err)
	}
	if root.Name.Local != "cases" || !isCasesNS(root) {
		return bad(fmt.Errorf("the root element must be <cases xmlns='%s'/>", NSCases))
	}
	name := filepath.Base(path)
	defCtx := map[string]string{"account": "juliet@example.com", "trigger": "offline"}
	var defEnable *stanza.Element
	var out []*testCase
	for _, ch := range root.Children {
		switch {
		case ch.Is(stanza.NSPush2, "enable"):
			defEnable = ch
		case ch.Name.Local == "context" && isCasesNS(ch):
			for _, a := range ch.Attr {
				defCtx[a.Name.Local] = a.Value
			}
		case ch.Name.Local == "case" && isCasesNS(ch):
			c, err := parseCase(ch, defEnable, defCtx)
			if err != nil {
				return bad(fmt.Errorf("case %q: %w", ch.AttrValue("name"), err))
			}
			c.file = name
			out = append(out, c)
		default:
			return bad(fmt.Errorf("unexpected <%s/> in <cases/>", ch.Name.Local))
		}
	}
	return out, nil
}

func parseCase(el *stanza.Element, defEnable *stanza.Element, defCtx map[string]string) (*testCase, error) {
	c := &testCase{name: el.AttrValue("name"), enable: defEnable}
	if c.name == "" {
		return nil, errors.New("needs a name attribute")
	}
	attrs := map[string]string{}
	for k, v := range defCtx {
		attrs[k] = v
	}
	for _, ch := range el.Children {
		switch {
		case ch.Is(stanza.NSPush2, "enable"):
			c.enable = ch
		case !isCasesNS(ch):
			return nil, fmt.Errorf("unexpected {%s}%s", ch.Name.Space, ch.Name.Local)
		case ch.Name.Local == "context":
			for _, a := range ch.Attr {
				attrs[a.Name.Local] = a.Value
			}
		case ch.Name.Local == "activity":
			c.activity = append(c.activity, ch)
		case ch.Name.Local == "stanza":
			if len(ch.Children) != 1 {
				return nil, errors.New("<stanza/> must hold exactly one element")
			}
			c.stanza = ch.Children[0].Clone()
			toClient(c.stanza)
		case ch.Name.Local == "expect":
			c.expect = ch
		default:
			return nil, fmt.Errorf("unexpected <%s/>", ch.Name.Local)
		}
	}
	if c.enable == nil {
		return nil, errors.New("no <enable xmlns='urn:xmpp:push2:0'/>, in the case or at the top of the file")
	}
	if c.expect == nil {
		return nil, errors.New("no <expect/>")
	}
	if c.stanza == nil && c.expect.AttrValue("enable-error") == "" {
		return nil, errors.New("no <stanza/>")
	}
	for k, v := range attrs {
		switch k {
		case "account":
			c.ctx.Account = v
		case "trigger":
			t, ok := engine.ParseTrigger(v)
			if !ok {
				return nil, fmt.Errorf("unknown trigger %q", v)
			}
			c.ctx.Trigger = t
		case "archive-id":
			c.ctx.ArchiveID = v
		case "archive-by":
			c.ctx.ArchiveBy = v
		case "nick":
			c.ctx.Nick = v
		case "now":
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return nil, fmt.Errorf("now: %w", err)
			}
			c.ctx.Now = t
		default:
			return nil, fmt.Errorf("unknown context attribute %q", k)
		}
	}
	return c, nil
}

// toClient puts elements that inherited the case file's namespace into
// jabber:client, as they would be in a client stream.
func toClient(e *stanza.Element) {
	if isCasesNS(e) {
		e.Name.Space = stanza.NSClient
	}
	for _, c := range e.Children {
		toClient(c)
	}
}
