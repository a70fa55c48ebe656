// Command unifiedpush-go is the send profile urn:push2:plugin:unifiedpush:0,
// written with the Go SDK (sdk/go): it builds a small UnifiedPush-style JSON
// payload and encrypts it for the device with the host's RFC 8291 function
// (sdk/ABI.md §9), so the push service relays bytes it cannot read.
//
// The registration's <send/>:
//
//	<send xmlns='urn:push2:plugin:unifiedpush:0'>
//	  <ua-public>base64 P-256 public key (65 bytes, uncompressed)</ua-public>
//	  <auth-secret>base64 16 bytes</auth-secret>
//	  <body-preview chars='80'/>            optional: include the body, cut
//	  <jwt-alg>ES256</jwt-alg>               optional VAPID (RFC 8292)
//	  <jwt-key>base64 PKCS#8</jwt-key>
//	  <jwt-claim name='aud'>https://push.example.net</jwt-claim>
//	</send>
//
// The children of <notification/> it writes:
//
//	<unifiedpush xmlns='urn:push2:plugin:unifiedpush:0' encoding='aes128gcm'>base64 body</unifiedpush>
//	<jwt xmlns='urn:push2:plugin:unifiedpush:0' key='base64url public key'>token</jwt>
//
// The plaintext is JSON: {"v":1,"type":"message"|"call"|"call-retract",
// "priority":…,"account":…,"from":…,"archive_id":…,"ts":…,"body":…}. If the
// result would exceed the engine's budget the body is dropped first; the
// archive id always stays.
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o unifiedpush-go.wasm ./plugins/unifiedpush-go
package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"unicode/utf8"

	push2 "github.com/push2/push2/sdk/go"
)

const ns = "urn:push2:plugin:unifiedpush:0"

func init() {
	push2.RegisterSend(push2.SendProfile{URI: ns, Send: send, Prepare: prepare})
}

func main() {}

type config struct {
	uaPublic, authSecret []byte
	preview              int
	jwtAlg, jwtKey       string
	claims               map[string]string
}

// decodeB64 accepts standard or URL alphabet, padded or not.
func decodeB64(s string) ([]byte, error) {
	s = strings.TrimRight(strings.Join(strings.Fields(s), ""), "=")
	if strings.ContainsAny(s, "-_") {
		return base64.RawURLEncoding.DecodeString(s)
	}
	return base64.RawStdEncoding.DecodeString(s)
}

func text(path string) (string, bool) {
	e, ok := push2.SendElement.Find(path)
	if !ok {
		return "", false
	}
	return strings.TrimSpace(e.Text()), true
}

func readConfig() (*config, error) {
	c := &config{}
	var err error
	s, _ := text("{" + ns + "}ua-public")
	if c.uaPublic, err = decodeB64(s); err != nil || len(c.uaPublic) != 65 || c.uaPublic[0] != 4 {
		return nil, errors.New("<ua-public/> must be a base64 uncompressed P-256 point (65 bytes)")
	}
	s, _ = text("{" + ns + "}auth-secret")
	if c.authSecret, err = decodeB64(s); err != nil || len(c.authSecret) != 16 {
		return nil, errors.New("<auth-secret/> must be 16 bytes in base64")
	}
	if p, ok := push2.SendElement.Find("{" + ns + "}body-preview"); ok {
		c.preview = 80
		if v, ok := p.Attr("chars"); ok {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > 1000 {
				return nil, errors.New("<body-preview chars='…'/> must be 0 to 1000")
			}
			c.preview = n
		}
	}
	c.jwtAlg, _ = text("{" + ns + "}jwt-alg")
	c.jwtKey, _ = text("{" + ns + "}jwt-key")
	if (c.jwtAlg == "") != (c.jwtKey == "") {
		return nil, errors.New("<jwt-alg/> and <jwt-key/> go together")
	}
	c.claims = map[string]string{}
	for _, cl := range push2.SendElement.Children("{" + ns + "}jwt-claim") {
		name, _ := cl.Attr("name")
		if name == "" {
			return nil, errors.New("<jwt-claim/> needs a 'name'")
		}
		c.claims[name] = strings.TrimSpace(cl.Text())
	}
	return c, nil
}

// prepare checks <send/> at enable time, signing once to check the key.
func prepare() error {
	c, err := readConfig()
	if err != nil {
		return err
	}
	if c.jwtAlg != "" {
		if _, _, err := sign(c); err != nil {
			return errors.New("<jwt-key/> is not a usable " + c.jwtAlg + " PKCS#8 key")
		}
	}
	return nil
}

func sign(c *config) (string, string, error) {
	claims, _ := json.Marshal(c.claims)
	return push2.SignJWT(c.jwtAlg, c.jwtKey, string(claims))
}

type payload struct {
	V         int    `json:"v"`
	Type      string `json:"type"`
	Priority  string `json:"priority"`
	Account   string `json:"account"`
	From      string `json:"from,omitempty"`
	ArchiveID string `json:"archive_id,omitempty"`
	TS        int64  `json:"ts"`
	Body      string `json:"body,omitempty"`
}

func cut(s string, chars int) string {
	for i := range s {
		if chars == 0 {
			return s[:i]
		}
		chars--
	}
	return s
}

func send() error {
	c, err := readConfig()
	if err != nil {
		return err
	}
	p := payload{V: 1, Type: "message", Account: push2.Account(), From: push2.Chat(), ArchiveID: push2.ArchiveID(), TS: push2.Now().UnixMilli()}
	switch push2.CallAction() {
	case push2.CallPropose:
		p.Type = "call"
	case push2.CallRetract:
		p.Type = "call-retract"
	}
	p.Priority = [...]string{"normal", "low", "normal", "high"}[max(0, min(3, push2.Fact(push2.FactDecisionPriority)))]
	if c.preview > 0 && utf8.ValidString(push2.Body()) {
		p.Body = cut(push2.Body(), c.preview)
	}
	var jwt string
	if c.jwtAlg != "" {
		token, key, err := sign(c)
		if err != nil {
			return errors.New("signing the JWT failed")
		}
		jwt = `<jwt xmlns="` + ns + `" key="` + key + `">` + token + `</jwt>`
	}
	for {
		plain, _ := json.Marshal(p)
		body, err := push2.WebPushEncrypt(c.uaPublic, c.authSecret, plain)
		if err != nil {
			return errors.New("encryption failed")
		}
		out := `<unifiedpush xmlns="` + ns + `" encoding="aes128gcm">` + base64.StdEncoding.EncodeToString(body) + `</unifiedpush>` + jwt
		if len(out) <= push2.Budget() {
			return push2.Output([]byte(out))
		}
		if p.Body == "" {
			return errors.New("the notification does not fit the budget even without the body")
		}
		p.Body = "" // minimization: the body goes first, the archive id stays
	}
}
