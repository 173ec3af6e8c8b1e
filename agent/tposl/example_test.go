package tposl_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/tposagent/tposagent/agent/tposl"
	"github.com/tposagent/tposagent/agent/tposl/tposltest"
)

// The agent's cycle: build, register, evaluate, save; and offline, the
// saved answer.
func Example() {
	srv := tposltest.NewServer() // stands in for https://…/TPOSL
	defer srv.Close()
	dir, _ := os.MkdirTemp("", "tposl-example")
	defer os.RemoveAll(dir)
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.FixedZone("TRT", 3*3600))

	p, err := tposl.Build(
		tposl.Store{TaxNumber: "1234567890", TaxOffice: "Kadıköy", CompanyName: "Örnek Gıda A.Ş.", PosNo: 1, PosType: 1},
		tposl.Facts{FiscalSerial: "JI20012345", ECRSerial: "AB1234567890", HostName: "KASA-01", Now: now, AgentVersion: "1.0.0"},
		tposl.Credentials{Username: "bayi", Password: "gizli"},
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	c, err := tposl.New(tposl.Config{URL: srv.URL(), Timeout: 10 * time.Second})
	if err != nil {
		fmt.Println(err)
		return
	}
	cache := tposl.Cache{Path: filepath.Join(dir, "license.json")}

	srv.SetReturn(tposl.Return{Status: true, Aktif: 1, DemoLisansGun: 30, DemoBasTarih: "2026-11-13", OnayFiscalSeriNo: "JI20012345"})
	r, err := c.Register(context.Background(), p)
	if err != nil {
		fmt.Println(err)
		return
	}
	lic := tposl.Evaluate(r, p.YKFiscalSeriNo, now)
	fmt.Println(lic.State, lic.DaysLeft, lic.Source)
	_ = cache.Save(tposl.Record{Return: r, FiscalSerial: p.YKFiscalSeriNo, CheckedAt: now})

	// Two days later the server is away.
	_ = srv.SetFault(tposltest.Fault{Mode: tposltest.Down})
	later := now.Add(48 * time.Hour)
	if _, err := c.Register(context.Background(), p); err != nil {
		rec, _ := cache.Load()
		lic = tposl.Effective(rec, p.YKFiscalSeriNo, later, tposl.DefaultGrace)
	}
	fmt.Println(lic.State, lic.DaysLeft, lic.Source)
	// Output:
	// demo 20 server
	// demo 18 cache
}
