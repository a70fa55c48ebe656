package webpush_test

import (
	"fmt"
	"time"

	"github.com/push2/push2/profiles/webpush"
)

// A push server encrypts a notification for a subscription and signs the
// VAPID token that goes with it; the user agent decrypts.
func Example() {
	id, _ := webpush.GenerateIdentity() // normally: the client's registration

	keys, err := webpush.ParseKeys(id.UAPublic, id.AuthSecret)
	if err != nil {
		panic(err)
	}
	msg := []byte(`{"title":"hello"}`)
	pad, _ := webpush.BucketPad(len(msg), webpush.MaxBodySize)
	body, err := webpush.Encrypt(keys, msg, pad)
	if err != nil {
		panic(err)
	}
	fmt.Println("body bytes:", len(body))

	vapid, _ := webpush.ParseVAPIDKey(id.VAPIDAlg, id.VAPIDPrivate)
	var signer webpush.Signer
	token, _ := signer.Sign(vapid, []webpush.Claim{{Name: "aud", Value: "https://push.example.net"}}, "mailto:ops@example.org", time.Now())
	claims, err := webpush.Verify(token, vapid.PublicRaw())
	fmt.Println("aud:", claims["aud"], err)

	ua, _ := id.UAPrivateKey()
	plain, err := webpush.Decrypt(ua, keys.AuthSecret, body)
	fmt.Println(string(plain), err)
	// Output:
	// body bytes: 358
	// aud: https://push.example.net <nil>
	// {"title":"hello"} <nil>
}
