package oduyotest_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/tposagent/tposagent/agent/records"

	"github.com/tposagent/tposagent/agent/oduyo"
	"github.com/tposagent/tposagent/agent/oduyo/oduyotest"
)

// A fake server, an outage and a reconnect, as the demo uses it.
func ExampleNewServer() {
	srv := oduyotest.NewServer()
	defer srv.Close()
	c, err := oduyo.New(oduyo.Config{BaseURL: srv.URL(), APIKey: srv.APIKey, Username: srv.Username, Password: srv.Password})
	if err != nil {
		panic(err)
	}
	col, key, err := records.NormalizeKasa([]byte(`{"id":2,"description":"MERKEZ KASA","balance":"1.260,50"}`))
	if err != nil {
		panic(err)
	}
	ctx := context.Background()

	srv.SetDown(true)
	err = c.UpdateKasa(ctx, key+"#1", col)
	class, _ := oduyo.Classify(err)
	fmt.Println("while down:", class)

	srv.SetDown(false)
	fmt.Println("after reconnect:", c.UpdateKasa(ctx, key+"#1", col))

	srv.Reject("2")
	err = c.UpdateKasa(ctx, key+"#2", col)
	var oe *oduyo.Error
	fmt.Println("rejected:", errors.As(err, &oe) && oe.Class == oduyo.Permanent, oe.StatusCode)

	for _, d := range srv.Delivered() {
		fmt.Println(d.Seq, d.Kind, d.IdempotencyKey, string(d.Column))
	}
	fmt.Println("logins:", srv.Logins())
	// Output:
	// while down: transient
	// after reconnect: <nil>
	// rejected: true 404
	// 1 kasa kasa:id:2#1 {"id":2,"balance":"1260.50","description":"MERKEZ KASA"}
	// logins: 1
}
