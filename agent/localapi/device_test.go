package localapi_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tposagent/tposagent/agent/license"
	"github.com/tposagent/tposagent/agent/localapi"
	"github.com/tposagent/tposagent/agent/records"
	"github.com/tposagent/tposagent/agent/tposl"
)

// fakeIdentity keeps the last report; a fiscal serial "XX00000000" is
// refused as the agent refuses a bad shape, "FAIL" as a failed write.
type fakeIdentity struct{ got []localapi.DeviceReport }

func (f *fakeIdentity) Device() localapi.Device {
	if len(f.got) == 0 {
		return localapi.Device{Source: "none"}
	}
	r := f.got[len(f.got)-1]
	return localapi.Device{FiscalSerial: r.FiscalSerial, Source: "pos", Brand: r.Brand, Model: r.Model, ECRSerial: r.ECRSerial}
}

func (f *fakeIdentity) ReportDevice(r localapi.DeviceReport) (localapi.Device, error) {
	switch r.FiscalSerial {
	case "XX00000000":
		return localapi.Device{}, &records.FieldError{Field: "fiscal_serial", Msg: "not a fiscal id"}
	case "FAIL":
		return localapi.Device{}, errors.New("disk full")
	}
	f.got = append(f.got, r)
	return f.Device(), nil
}

var _ localapi.DeviceIdentity = (*fakeIdentity)(nil)

func TestDeviceEndpoints(t *testing.T) {
	id := &fakeIdentity{}
	srv := httptest.NewServer(contractChecked(t, localapi.NewHandler(localapi.Config{
		Token: token, Device: id,
		Status:  func() localapi.Status { return localapi.Status{} },
		License: func() license.License { return tposl.Unknown("x") },
	})))
	defer srv.Close()

	code, _, body := do(t, srv, http.MethodPut, "/v1/device", `{"fiscal_serial": " JI20012345 ", "brand": "Hugin Şirketi", "model": "Tığ", "ecr_serial": "HGN1", "port": " COM3 "}`)
	if code != http.StatusOK {
		t.Fatalf("PUT: %d %s", code, body)
	}
	var d localapi.Device
	if err := json.Unmarshal(body, &d); err != nil || d.FiscalSerial != "JI20012345" || d.Brand != "Hugin Şirketi" || d.Model != "Tığ" {
		t.Fatalf("PUT answer %s: %v", body, err)
	}
	if got := id.got[0].Port; got != "COM3" {
		t.Fatalf("port %q reached the agent, want COM3", got)
	}
	code, _, body = do(t, srv, http.MethodGet, "/v1/device", "")
	if code != http.StatusOK || !strings.Contains(string(body), `"fiscal_serial": "JI20012345"`) {
		t.Fatalf("GET: %d %s", code, body)
	}
	for _, tc := range []struct {
		body, field string
		code        int
	}{
		{`{"fiscal_serial": ""}`, "fiscal_serial", 400},
		{`{"brand": "HUGIN"}`, "fiscal_serial", 400},
		{`{"fiscal_serial": "XX00000000"}`, "fiscal_serial", 400},
		{`{"fiscal_serial": "JI20012345", "brand": "` + strings.Repeat("Ş", 65) + `"}`, "brand", 400},
		{`{"fiscal_serial": "JI20012345", "ecr_serial": "` + strings.Repeat("1", 65) + `"}`, "ecr_serial", 400},
		{`{"fiscal_serial": "` + strings.Repeat("J", 33) + `"}`, "fiscal_serial", 400},
		{`{"fiscal_serial": "JI20012345", "model": "a\nb"}`, "model", 400},
		{`{"fiscal_serial": "JI20012345", "extra": 1}`, "", 400},
		{`{"fiscal_serial": "JI20012345", "port": "COM3\u0000"}`, "port", 400},
		{`{"fiscal_serial": "JI20012345", "port": "/dev/` + strings.Repeat("x", 252) + `"}`, "port", 400},
		{`{"fiscal_serial": 12}`, "", 400},
		{`not json`, "", 400},
		{`{"fiscal_serial": "JI20012345"}{"fiscal_serial": "JI20012345"}`, "", 400},
		{"{\"fiscal_serial\": \"JI20012345\", \"brand\": \"\xfe\"}", "", 400},
		{`{"fiscal_serial": "` + strings.Repeat("A", 5000) + `"}`, "fiscal_serial", 400}, // too long a value: the field
		{`{"fiscal_serial": "` + strings.Repeat("A", localapi.MaxBody) + `"}`, "", 413},  // the API's one body limit
		{`{"fiscal_serial": "FAIL"}`, "", 503},
	} {
		code, eb, _ := do(t, srv, http.MethodPut, "/v1/device", tc.body)
		if code != tc.code || eb.Field != tc.field || eb.Error == "" {
			t.Errorf("PUT %.40q: %d %+v, want %d field %q", tc.body, code, eb, tc.code, tc.field)
		}
	}
	if len(id.got) != 1 {
		t.Fatalf("%d reports kept, want 1 (bad input must change nothing)", len(id.got))
	}
	if code, _, _ := do(t, srv, http.MethodPost, "/v1/device", `{}`); code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", code)
	}
}

// FuzzParseDeviceReport: any body gives a report within the limits or an
// error, never a panic.
func FuzzParseDeviceReport(f *testing.F) {
	f.Add([]byte(`{"fiscal_serial": "JI20012345", "brand": "HUGIN", "model": "T300", "ecr_serial": "FT40050248"}`))
	f.Add([]byte(`{"fiscal_serial": "JI20012345", "brand": "Ödeme Şirketi"}`))
	f.Add([]byte(`{"fiscal_serial": null}`))
	f.Add([]byte("\xff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := localapi.ParseDeviceReport(b)
		if err != nil {
			return
		}
		if r.FiscalSerial == "" || utf8.RuneCountInString(r.Brand) > localapi.MaxDeviceText ||
			utf8.RuneCountInString(r.FiscalSerial) > localapi.MaxDeviceSerial || !utf8.ValidString(r.Model) {
			t.Fatalf("accepted %+v", r)
		}
	})
}
