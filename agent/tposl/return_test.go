package tposl_test

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tposagent/tposagent/agent/tposl"
)

const specJSON = `{
  "Status": true,
  "ErrorMessageCode": 2,
  "ErrorMessage": "sample string 3",
  "Id": 4,
  "BayiKodu": "sample string 5",
  "ProgramKodu": "sample string 6",
  "GMP3Status": 7,
  "GMP3ExpDate": "sample string 8",
  "LisansModul": "sample string 9",
  "LisansStatus": 10,
  "DemoLisansGun": 11,
  "DemoBasTarih": "sample string 12",
  "Aktif": 13,
  "OnayFiscalSeriNo": "sample string 14"
}`

const specXML = `<ITPOSReturn xmlns:i="http://www.w3.org/2001/XMLSchema-instance" xmlns="http://schemas.datacontract.org/2004/07/TriaEFaturaRestServer.Models">
  <Aktif>13</Aktif>
  <BayiKodu>sample string 5</BayiKodu>
  <DemoBasTarih>sample string 12</DemoBasTarih>
  <DemoLisansGun>11</DemoLisansGun>
  <ErrorMessage>sample string 3</ErrorMessage>
  <ErrorMessageCode>2</ErrorMessageCode>
  <GMP3ExpDate>sample string 8</GMP3ExpDate>
  <GMP3Status>7</GMP3Status>
  <Id>4</Id>
  <LisansModul>sample string 9</LisansModul>
  <LisansStatus>10</LisansStatus>
  <OnayFiscalSeriNo>sample string 14</OnayFiscalSeriNo>
  <ProgramKodu>sample string 6</ProgramKodu>
  <Status>true</Status>
</ITPOSReturn>`

var specReturn = tposl.Return{
	Status: true, ErrorMessageCode: 2, ErrorMessage: "sample string 3", Id: 4,
	BayiKodu: "sample string 5", ProgramKodu: "sample string 6", GMP3Status: 7,
	GMP3ExpDate: "sample string 8", LisansModul: "sample string 9", LisansStatus: 10,
	DemoLisansGun: 11, DemoBasTarih: "sample string 12", Aktif: 13,
	OnayFiscalSeriNo: "sample string 14",
}

func TestDecodeReturn(t *testing.T) {
	tests := []struct {
		name string
		body string
		want tposl.Return
	}{
		{"spec json", specJSON, specReturn},
		{"spec xml", specXML, specReturn},
		{"bom and blanks", "\xef\xbb\xbf \n" + specJSON, specReturn},
		{"xml declaration, no namespace", `<?xml version="1.0" encoding="utf-8"?><ITPOSReturn><Status>false</Status><ErrorMessage>Şifre hatalı</ErrorMessage><ErrorMessageCode>5</ErrorMessageCode></ITPOSReturn>`,
			tposl.Return{ErrorMessage: "Şifre hatalı", ErrorMessageCode: 5}},
		{"xml nil elements", `<ITPOSReturn xmlns:i="http://www.w3.org/2001/XMLSchema-instance"><Status>1</Status><DemoBasTarih i:nil="true"/><Aktif>1</Aktif></ITPOSReturn>`,
			tposl.Return{Status: true, Aktif: 1}},
		{"numbers as strings", `{"Status":"true","Aktif":"1","LisansStatus":" 1 ","DemoLisansGun":"30","Id":"77","GMP3Status":"0"}`,
			tposl.Return{Status: true, Aktif: 1, LisansStatus: 1, DemoLisansGun: 30, Id: 77}},
		{"status as number", `{"Status":1,"Aktif":1.0}`, tposl.Return{Status: true, Aktif: 1}},
		{"status as string 0", `{"Status":"0"}`, tposl.Return{}},
		{"status True", `{"Status":"True"}`, tposl.Return{Status: true}},
		{"nulls", `{"Status":null,"ErrorMessage":null,"Aktif":null,"DemoBasTarih":null}`, tposl.Return{}},
		{"lower-case keys", `{"status":true,"aktif":1,"lisansstatus":1,"onayfiscalserino":"JI20012345"}`,
			tposl.Return{Status: true, Aktif: 1, LisansStatus: 1, OnayFiscalSeriNo: "JI20012345"}},
		{"string fields as numbers", `{"Status":true,"BayiKodu":12345,"DemoBasTarih":20261101}`,
			tposl.Return{Status: true, BayiKodu: "12345", DemoBasTarih: "20261101"}},
		{"unknown fields ignored", `{"Status":true,"Extra":{"a":[1,2]},"Aktif":1}`, tposl.Return{Status: true, Aktif: 1}},
		{"double-encoded", `"{\"Status\":true,\"Aktif\":1,\"ErrorMessage\":\"İşlem başarılı\"}"`,
			tposl.Return{Status: true, Aktif: 1, ErrorMessage: "İşlem başarılı"}},
		{"turkish intact", `{"Status":false,"ErrorMessage":"Kullanıcı bulunamadı: ğüşıöçİ"}`,
			tposl.Return{ErrorMessage: "Kullanıcı bulunamadı: ğüşıöçİ"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tposl.DecodeReturn([]byte(tt.body))
			if err != nil {
				t.Fatalf("DecodeReturn: %v", err)
			}
			if got != tt.want {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestDecodeReturnRejects(t *testing.T) {
	for _, body := range []string{
		"", "   ", "OK", "null", "[]", `[{"Status":true}]`, `{"Status":tru`, `{"Status":"maybe"}`,
		`{"Aktif":"bir"}`, `{"Aktif":1.5}`, `{"Aktif":99999999999}`, `{"ErrorMessage":{"a":1}}`,
		`<html><body>x</body></html>`, `<Other><Status>true</Status></Other>`, `<ITPOSReturn><Status>true</Status>`,
		`"just a string"`, `"[1]"`, "\x00\x01",
	} {
		r, err := tposl.DecodeReturn([]byte(body))
		if err == nil {
			t.Errorf("DecodeReturn(%q) = %+v, want an error", body, r)
		}
	}
	_, err := tposl.DecodeReturn([]byte("OK"))
	if !errors.Is(err, tposl.ErrNotReturn) {
		t.Errorf("plain text: %v, want ErrNotReturn", err)
	}
}

func TestReturnEncodings(t *testing.T) {
	b, err := json.Marshal(specReturn)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	var want map[string]any
	_ = json.Unmarshal([]byte(specJSON), &want)
	if !reflect.DeepEqual(m, want) {
		t.Errorf("json:\n got %v\nwant %v", m, want)
	}
	x, err := xml.Marshal(specReturn)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(x), `<ITPOSReturn xmlns="`+tposl.Namespace+`"><Aktif>13</Aktif>`) {
		t.Errorf("xml: %s", x)
	}
	got, err := tposl.DecodeReturn(x)
	if err != nil || got != specReturn {
		t.Errorf("xml round trip: %+v, %v", got, err)
	}
}

func FuzzDecodeReturn(f *testing.F) {
	for _, s := range []string{specJSON, specXML, `{"Status":"1","Aktif":"1"}`, `"{\"Status\":true}"`,
		`{"Status":tru`, "<html>", `{"Aktif":1e3}`, `{"Aktif":"-0"}`, `<ITPOSReturn><Aktif>x</Aktif></ITPOSReturn>`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := tposl.DecodeReturn(b)
		if err != nil {
			return
		}
		for _, s := range []string{r.ErrorMessage, r.BayiKodu, r.ProgramKodu, r.GMP3ExpDate, r.LisansModul, r.DemoBasTarih, r.OnayFiscalSeriNo} {
			if !utf8.ValidString(s) {
				return // json would repair it; the round trip is not exact
			}
		}
		j, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("marshal %+v: %v", r, err)
		}
		r2, err := tposl.DecodeReturn(j)
		if err != nil || r2 != r {
			t.Fatalf("json round trip of %+v: %+v, %v", r, r2, err)
		}
		// Evaluate never panics on whatever decoded.
		_ = tposl.Evaluate(r, "JI20012345", fixedNow)
	})
}
