package tposl_test

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tposagent/tposagent/agent/tposl"
)

var trt = time.FixedZone("TRT", 3*3600)

const turkish = "ğüşıöçİ ĞÜŞIÖÇ"

func sampleStore() tposl.Store {
	return tposl.Store{
		TaxNumber:                 "1234567890",
		TaxOffice:                 "Kadıköy",
		CompanyName:               "Örnek Gıda A.Ş. " + turkish,
		PosNo:                     3,
		PosType:                   2,
		ReceiptLimit:              "5000",
		EInvoiceActive:            1,
		EInvoicePrefix:            "ÖRN",
		EArchiveActive:            1,
		EArchivePrefix:            "EAŞ",
		EArchiveNameRequiredLimit: "2000",
		EArchiveEmailRequired:     1,
	}
}

func sampleFacts() tposl.Facts {
	return tposl.Facts{
		FiscalSerial:   " JI20012345 ",
		ECRSerial:      "AB1234567890",
		HostName:       "KASA-İŞÇİ-01",
		Now:            time.Date(2026, 11, 23, 9, 5, 7, 0, trt),
		LastBackup:     time.Date(2026, 11, 22, 23, 59, 1, 0, trt),
		AgentVersion:   "1.2.3",
		TPOSVersion:    "8.4.2",
		TPOSVersionSeq: "842017",
	}
}

var sampleCreds = tposl.Credentials{Username: "bayi.kullanıcı", Password: "S3cr3t-Şifre!x"}

func TestBuildAllFields(t *testing.T) {
	p, err := tposl.Build(sampleStore(), sampleFacts(), sampleCreds)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"VERGI_NUMARASI":                 "1234567890",
		"VERGI_DAIRESI":                  "Kadıköy",
		"FIRMA_ADI":                      "Örnek Gıda A.Ş. " + turkish,
		"POS_NO":                         float64(3),
		"POS_SERI_NO":                    "AB1234567890",
		"FIS_LIMITI":                     "5000",
		"SON_YEDEK_ZAMANI":               "2026-11-22 23:59:01",
		"POS_TIPI":                       float64(2),
		"VERSIYON":                       "1.2.3",
		"TPOS_VERSIYON":                  "8.4.2",
		"TPOS_VERSIYON_SIRA":             "842017",
		"YK_FISCAL_SERI_NO":              "JI20012345",
		"E_FAT_AKTIF":                    float64(1),
		"E_FAT_NO_BAS_KOD":               "ÖRN",
		"E_ARV_NO_BAS_KOD":               "EAŞ",
		"DONEM_YILI":                     float64(2026),
		"E_ARV_AKTIF":                    float64(1),
		"E_ARV_MUSTERI_AD_ZORUNLU_LIMIT": "2000",
		"E_ARV_EMAIL_ZORUNLU":            float64(1),
		"KASA_TARIH_SAAT":                "2026-11-23 09:05:07",
		"PC_NAME":                        "KASA-İŞÇİ-01",
		"WebErisimKullanici":             "bayi.kullanıcı",
		"WebErisimSifre":                 "S3cr3t-Şifre!x",
	}
	if len(m) != 23 {
		t.Errorf("got %d fields, want 23: %v", len(m), keys(m))
	}
	for k, v := range want {
		if got, ok := m[k]; !ok || got != v {
			t.Errorf("%s = %#v (present %v), want %#v", k, got, ok, v)
		}
	}
	// Field order on the wire is the spec's.
	order := []string{"VERGI_NUMARASI", "VERGI_DAIRESI", "FIRMA_ADI", "POS_NO", "POS_SERI_NO",
		"FIS_LIMITI", "SON_YEDEK_ZAMANI", "POS_TIPI", "VERSIYON", "TPOS_VERSIYON",
		"TPOS_VERSIYON_SIRA", "YK_FISCAL_SERI_NO", "E_FAT_AKTIF", "E_FAT_NO_BAS_KOD",
		"E_ARV_NO_BAS_KOD", "DONEM_YILI", "E_ARV_AKTIF", "E_ARV_MUSTERI_AD_ZORUNLU_LIMIT",
		"E_ARV_EMAIL_ZORUNLU", "KASA_TARIH_SAAT", "PC_NAME", "WebErisimKullanici", "WebErisimSifre"}
	last := -1
	for _, k := range order {
		i := bytes.Index(b, []byte(`"`+k+`":`))
		if i <= last {
			t.Errorf("field %s out of the spec's order", k)
		}
		last = i
	}
}

func keys(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

func TestBuildDefaultsAndOverrides(t *testing.T) {
	s := sampleStore()
	f := sampleFacts()
	f.LastBackup = time.Time{}
	p, err := tposl.Build(s, f, tposl.Credentials{})
	if err != nil {
		t.Fatal(err)
	}
	if p.SonYedekZamani != "" {
		t.Errorf("SON_YEDEK_ZAMANI = %q, want empty without a backup", p.SonYedekZamani)
	}
	if p.DonemYili != 2026 || p.PosSeriNo != "AB1234567890" || p.TPOSVersiyon != "8.4.2" {
		t.Errorf("defaults: year %d, pos serial %q, tpos %q", p.DonemYili, p.PosSeriNo, p.TPOSVersiyon)
	}

	s.PeriodYear = 2025
	s.POSSerial = "CFG-SERIAL"
	s.TPOSVersion, s.TPOSVersionSeq = "9.0", "900"
	p, err = tposl.Build(s, f, tposl.Credentials{})
	if err != nil {
		t.Fatal(err)
	}
	if p.DonemYili != 2025 || p.PosSeriNo != "CFG-SERIAL" || p.TPOSVersiyon != "9.0" || p.TPOSVersiyonSira != "900" {
		t.Errorf("overrides: year %d, pos serial %q, tpos %q/%q", p.DonemYili, p.PosSeriNo, p.TPOSVersiyon, p.TPOSVersiyonSira)
	}

	// The till clock is printed in its own zone.
	f.Now = time.Date(2026, 12, 31, 22, 30, 0, 0, time.UTC).In(trt)
	s.PeriodYear = 0
	p, err = tposl.Build(s, f, tposl.Credentials{})
	if err != nil {
		t.Fatal(err)
	}
	if p.KasaTarihSaat != "2027-01-01 01:30:00" || p.DonemYili != 2027 {
		t.Errorf("clock: %q year %d", p.KasaTarihSaat, p.DonemYili)
	}
}

func TestBuildLimits(t *testing.T) {
	rep := strings.Repeat
	type mod func(*tposl.Store, *tposl.Facts)
	tests := []struct {
		name  string
		mod   mod
		field string // error expected on this field; "" none
		limit int
		check func(tposl.Params) string // for truncations
	}{
		{"tax number at limit", func(s *tposl.Store, _ *tposl.Facts) { s.TaxNumber = rep("1", 35) }, "", 0, nil},
		{"tax number over", func(s *tposl.Store, _ *tposl.Facts) { s.TaxNumber = rep("1", 36) }, "VERGI_NUMARASI", 35, nil},
		{"tax office Turkish at limit", func(s *tposl.Store, _ *tposl.Facts) { s.TaxOffice = rep("ş", 50) }, "", 0, nil},
		{"tax office over", func(s *tposl.Store, _ *tposl.Facts) { s.TaxOffice = rep("ı", 51) }, "VERGI_DAIRESI", 50, nil},
		{"company over", func(s *tposl.Store, _ *tposl.Facts) { s.CompanyName = rep("İ", 201) }, "FIRMA_ADI", 200, nil},
		{"company at limit", func(s *tposl.Store, _ *tposl.Facts) { s.CompanyName = rep("Ç", 200) }, "", 0, nil},
		{"fiscal serial over", func(_ *tposl.Store, f *tposl.Facts) { f.FiscalSerial = rep("J", 41) }, "YK_FISCAL_SERI_NO", 40, nil},
		{"e-invoice prefix over", func(s *tposl.Store, _ *tposl.Facts) { s.EInvoicePrefix = rep("A", 16) }, "E_FAT_NO_BAS_KOD", 15, nil},
		{"e-archive prefix over", func(s *tposl.Store, _ *tposl.Facts) { s.EArchivePrefix = rep("Ğ", 16) }, "E_ARV_NO_BAS_KOD", 15, nil},
		{"emoji counts two units", func(s *tposl.Store, _ *tposl.Facts) { s.EArchivePrefix = rep("😀", 8) }, "E_ARV_NO_BAS_KOD", 15, nil},
		{"pc name truncated", func(_ *tposl.Store, f *tposl.Facts) { f.HostName = rep("ğ", 250) }, "", 0,
			func(p tposl.Params) string { return want(p.PCName, rep("ğ", 200)) }},
		{"pc name truncated without splitting a pair", func(_ *tposl.Store, f *tposl.Facts) { f.HostName = "a" + rep("😀", 150) }, "", 0,
			func(p tposl.Params) string { return want(p.PCName, "a"+rep("😀", 99)) }},
		{"agent version truncated", func(_ *tposl.Store, f *tposl.Facts) { f.AgentVersion = rep("9", 40) }, "", 0,
			func(p tposl.Params) string { return want(p.Versiyon, rep("9", 35)) }},
		{"tpos version truncated", func(_ *tposl.Store, f *tposl.Facts) { f.TPOSVersion = rep("8", 31) }, "", 0,
			func(p tposl.Params) string { return want(p.TPOSVersiyon, rep("8", 30)) }},
		{"tpos version override truncated", func(s *tposl.Store, _ *tposl.Facts) { s.TPOSVersionSeq = rep("7", 31) }, "", 0,
			func(p tposl.Params) string { return want(p.TPOSVersiyonSira, rep("7", 30)) }},
		{"no limit on receipt limit", func(s *tposl.Store, _ *tposl.Facts) { s.ReceiptLimit = rep("9", 500) }, "", 0, nil},
		{"invalid utf-8 company", func(s *tposl.Store, _ *tposl.Facts) { s.CompanyName = "Örnek \xff" }, "FIRMA_ADI", 0, nil},
		{"invalid utf-8 host", func(_ *tposl.Store, f *tposl.Facts) { f.HostName = "kasa\xc3" }, "PC_NAME", 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, f := sampleStore(), sampleFacts()
			tt.mod(&s, &f)
			p, err := tposl.Build(s, f, sampleCreds)
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Build: %v", err)
				}
				if err := p.Validate(); err != nil {
					t.Fatalf("Validate after Build: %v", err)
				}
				if tt.check != nil {
					if msg := tt.check(p); msg != "" {
						t.Error(msg)
					}
				}
				return
			}
			var fe *tposl.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Build error = %v, want *FieldError", err)
			}
			if fe.Field != tt.field || fe.Limit != tt.limit {
				t.Errorf("FieldError = %+v, want field %s limit %d", fe, tt.field, tt.limit)
			}
			if tt.limit > 0 && fe.Len <= fe.Limit {
				t.Errorf("FieldError.Len %d not over limit %d", fe.Len, fe.Limit)
			}
			if !strings.Contains(err.Error(), tt.field) || strings.Contains(err.Error(), "\xff") {
				t.Errorf("error text %q", err)
			}
		})
	}
}

func want(got, want string) string {
	if got != want {
		return fmt.Sprintf("got %q (%d bytes), want %q", got, len(got), want)
	}
	return ""
}

func TestParamsNeverPrintPassword(t *testing.T) {
	p, err := tposl.Build(sampleStore(), sampleFacts(), sampleCreds)
	if err != nil {
		t.Fatal(err)
	}
	var logBuf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	log.Info("params", "p", p, "creds", sampleCreds)
	slog.New(slog.NewTextHandler(&logBuf, nil)).Info("params", "p", p, "creds", sampleCreds, "pp", &p)

	outs := map[string]string{
		"String":   p.String(),
		"GoString": p.GoString(),
		"log":      logBuf.String(),
		"creds":    sampleCreds.String() + sampleCreds.GoString(),
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%20v", "%d"} {
		outs[verb] = fmt.Sprintf(verb, p) + fmt.Sprintf(verb, &p) + fmt.Sprintf(verb, []tposl.Params{p}) +
			fmt.Sprintf(verb, sampleCreds) + fmt.Sprintf(verb, map[string]any{"x": p})
	}
	for name, out := range outs {
		if strings.Contains(out, sampleCreds.Password) || strings.Contains(out, "S3cr3t") {
			t.Errorf("%s shows the password: %s", name, out)
		}
	}
	if !strings.Contains(outs["%+v"], "JI20012345") || !strings.Contains(outs["%+v"], "[REDACTED]") {
		t.Errorf("%%+v lost the fields: %s", outs["%+v"])
	}
	if !strings.Contains(outs["log"], "JI20012345") {
		t.Errorf("log lost the fiscal serial: %s", outs["log"])
	}
	if !strings.HasPrefix(p.GoString(), "tposl.Params{") {
		t.Errorf("GoString = %s", p.GoString())
	}
	// The body still carries it.
	b, _ := json.Marshal(p)
	if !strings.Contains(string(b), sampleCreds.Password) {
		t.Error("json lost the password")
	}
}

func TestParamsXML(t *testing.T) {
	p, err := tposl.Build(sampleStore(), sampleFacts(), sampleCreds)
	if err != nil {
		t.Fatal(err)
	}
	b, err := xml.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if !strings.HasPrefix(s, `<ParamsTPOSKasaBilgisi xmlns="`+tposl.Namespace+`"><WebErisimKullanici>`) {
		t.Errorf("xml head: %.160s", s)
	}
	if i, j := strings.Index(s, "<DONEM_YILI>"), strings.Index(s, "<YK_FISCAL_SERI_NO>"); i < 0 || j < i {
		t.Errorf("xml order wrong: %s", s)
	}
	var q tposl.Params
	if err := xml.Unmarshal(b, &q); err != nil {
		t.Fatal(err)
	}
	if q != p {
		t.Errorf("xml round trip:\n got %+v\nwant %+v", q, p)
	}
	// The spec's sample, namespace and all.
	sample := `<ParamsTPOSKasaBilgisi xmlns:i="http://www.w3.org/2001/XMLSchema-instance" xmlns="http://schemas.datacontract.org/2004/07/TriaEFaturaRestServer.Models">
  <WebErisimKullanici>sample string 22</WebErisimKullanici>
  <DONEM_YILI>16</DONEM_YILI>
  <FIRMA_ADI>Örnek</FIRMA_ADI>
</ParamsTPOSKasaBilgisi>`
	var r tposl.Params
	if err := xml.Unmarshal([]byte(sample), &r); err != nil {
		t.Fatal(err)
	}
	if r.DonemYili != 16 || r.WebErisimKullanici != "sample string 22" || r.FirmaAdi != "Örnek" {
		t.Errorf("sample: %+v", r)
	}
}

// TestLimitsOfSpec pins the twelve limits of spec/tposl-kasa-bilgisi.txt.
func TestLimitsOfSpec(t *testing.T) {
	want := map[string]int{"VERGI_NUMARASI": 35, "VERGI_DAIRESI": 50, "FIRMA_ADI": 200,
		"SON_YEDEK_ZAMANI": 35, "VERSIYON": 35, "TPOS_VERSIYON": 30, "TPOS_VERSIYON_SIRA": 30,
		"YK_FISCAL_SERI_NO": 40, "E_FAT_NO_BAS_KOD": 15, "E_ARV_NO_BAS_KOD": 15,
		"KASA_TARIH_SAAT": 35, "PC_NAME": 200}
	ls := tposl.Limits()
	if len(ls) != len(want) {
		t.Fatalf("%d limits, want %d", len(ls), len(want))
	}
	for _, l := range ls {
		if want[l.Field] != l.Max {
			t.Errorf("%s: %d, want %d", l.Field, l.Max, want[l.Field])
		}
	}
	ls[0].Max = 1
	if tposl.Limits()[0].Max == 1 {
		t.Error("Limits returns the package's own slice")
	}
}
