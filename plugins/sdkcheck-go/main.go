// Command sdkcheck-go is the SDK conformance profile
// urn:push2:plugin:sdkcheck:0 in Go. It exists for the tests, not for
// deployment: a send profile that reports, as attributes of one element,
// what every SDK helper returned, so that the shared cases in ./cases check
// that the Go, C, Rust and AssemblyScript SDKs read the same input the same
// way (sdk/ABI.md §13: host and SDKs cannot drift).
//
// Output: <check xmlns='urn:test:sdk' …/> with one attribute per helper,
// <sealed xmlns='urn:test:sdk'>base64 of the RFC 8291-encrypted body</sealed>
// and, if <send/> has <jwt-key/>, <jwt xmlns='urn:test:sdk' key='…'>token</jwt>.
package main

import (
	"encoding/base64"
	"strconv"
	"strings"

	push2 "github.com/push2/push2/sdk/go"
)

const ns = "urn:test:sdk"

func init() {
	push2.RegisterSend(push2.SendProfile{URI: "urn:push2:plugin:sdkcheck:0", Send: send})
}

func main() {}

func b(v bool) string {
	if v {
		return "1"
	}
	return "0"
}

func send() error {
	var o strings.Builder
	attr := func(name, value string) { o.WriteString(" " + name + "='" + value + "'") }
	num := func(name string, v int32) { attr(name, strconv.Itoa(int(v))) }
	o.WriteString("<check xmlns='" + ns + "'")
	attr("lang", "go")
	num("kind", push2.Fact(push2.FactKind))
	num("has-body", push2.Fact(push2.FactHasBody))
	num("call", push2.Fact(push2.FactCall))
	num("important", push2.Fact(push2.FactImportant))
	num("mention", push2.Fact(push2.FactMention))
	num("groupchat", push2.Fact(push2.FactGroupchat))
	num("priority", push2.Fact(push2.FactDecisionPriority))
	num("voip", push2.Fact(push2.FactDecisionVoIP))
	num("trigger", push2.Fact(push2.FactTrigger))
	num("unknown-fact", push2.Fact(9999))
	attr("budget-ok", b(push2.Budget() > 1000))
	attr("account", push2.Account())
	attr("chat", push2.Chat())
	attr("from", push2.From())
	attr("archive-id", push2.ArchiveID())
	attr("nick", push2.Field(push2.FieldNick))
	attr("type", push2.Field(push2.FieldType))
	attr("trigger-name", push2.Field(push2.FieldTrigger))
	attr("profile", push2.Field(push2.FieldProfile))
	attr("body", push2.Body())
	attr("msg-name", push2.Message.Name())
	attr("msg-ns", push2.Message.Namespace())
	if p, ok := push2.SendElement.Find("{" + ns + "}param"); ok {
		v, _ := p.Attr("value")
		attr("param", v)
		attr("param-text", p.Text())
		long, _ := p.Attr("long")
		num("long-len", int32(len(long)))
		_, has := p.Attr("absent")
		attr("absent-attr", b(has))
	}
	num("children", int32(len(push2.Stanza.Children(""))))
	if sid, ok := push2.Stanza.Find("{urn:xmpp:sid:0}stanza-id"); ok {
		v, _ := sid.Attr("id")
		attr("stanza-id", v)
	}
	_, found := push2.Stanza.Find("{urn:nowhere}nothing")
	attr("missing-found", b(found))
	attr("xml-ok", b(strings.HasPrefix(push2.Stanza.XML(), "<message")))
	attr("now", strconv.FormatInt(push2.Now().UnixMilli(), 10))
	attr("b64", base64.StdEncoding.EncodeToString([]byte(push2.Body())))
	attr("b64url", base64.RawURLEncoding.EncodeToString([]byte(push2.Body())))
	o.WriteString("/>")

	ua, _ := push2.SendElement.Find("{" + ns + "}ua-public")
	auth, _ := push2.SendElement.Find("{" + ns + "}auth-secret")
	uaRaw, err1 := base64.RawURLEncoding.DecodeString(ua.Text())
	authRaw, err2 := base64.RawURLEncoding.DecodeString(auth.Text())
	if err1 == nil && err2 == nil {
		sealed, err := push2.WebPushEncrypt(uaRaw, authRaw, []byte(push2.Body()))
		if err != nil {
			return err
		}
		o.WriteString("<sealed xmlns='" + ns + "'>" + base64.StdEncoding.EncodeToString(sealed) + "</sealed>")
	}
	if k, ok := push2.SendElement.Find("{" + ns + "}jwt-key"); ok {
		token, key, err := push2.SignJWT("ES256", k.Text(), `{"aud":"https://push.example.net"}`)
		if err != nil {
			return err
		}
		o.WriteString("<jwt xmlns='" + ns + "' key='" + key + "'>" + token + "</jwt>")
	}
	return push2.Output([]byte(o.String()))
}
