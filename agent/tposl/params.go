package tposl

import (
	"encoding/xml"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// Namespace is the XML namespace of the server's data contracts.
const Namespace = "http://schemas.datacontract.org/2004/07/TriaEFaturaRestServer.Models"

// TimeLayout is the layout of KASA_TARIH_SAAT and SON_YEDEK_ZAMANI.
const TimeLayout = "2006-01-02 15:04:05"

// redacted replaces a secret wherever a value would be printed.
const redacted = "[REDACTED]"

// Params is ParamsTPOSKasaBilgisi, the body of POST TPOSL. The JSON field
// names and their order are those of the spec; integers are JSON numbers,
// everything else a string.
//
// Params never prints WebErisimSifre: String, every fmt verb (%v, %+v, %#v,
// %s, %q) and slog (LogValue) show "[REDACTED]" in its place. Only
// json.Marshal and xml.Marshal, which build the request body, carry it.
type Params struct {
	VergiNumarasi             string `json:"VERGI_NUMARASI" xml:"VERGI_NUMARASI"`
	VergiDairesi              string `json:"VERGI_DAIRESI" xml:"VERGI_DAIRESI"`
	FirmaAdi                  string `json:"FIRMA_ADI" xml:"FIRMA_ADI"`
	PosNo                     int    `json:"POS_NO" xml:"POS_NO"`
	PosSeriNo                 string `json:"POS_SERI_NO" xml:"POS_SERI_NO"`
	FisLimiti                 string `json:"FIS_LIMITI" xml:"FIS_LIMITI"`
	SonYedekZamani            string `json:"SON_YEDEK_ZAMANI" xml:"SON_YEDEK_ZAMANI"`
	PosTipi                   int    `json:"POS_TIPI" xml:"POS_TIPI"`
	Versiyon                  string `json:"VERSIYON" xml:"VERSIYON"`
	TPOSVersiyon              string `json:"TPOS_VERSIYON" xml:"TPOS_VERSIYON"`
	TPOSVersiyonSira          string `json:"TPOS_VERSIYON_SIRA" xml:"TPOS_VERSIYON_SIRA"`
	YKFiscalSeriNo            string `json:"YK_FISCAL_SERI_NO" xml:"YK_FISCAL_SERI_NO"`
	EFatAktif                 int    `json:"E_FAT_AKTIF" xml:"E_FAT_AKTIF"`
	EFatNoBasKod              string `json:"E_FAT_NO_BAS_KOD" xml:"E_FAT_NO_BAS_KOD"`
	EArvNoBasKod              string `json:"E_ARV_NO_BAS_KOD" xml:"E_ARV_NO_BAS_KOD"`
	DonemYili                 int    `json:"DONEM_YILI" xml:"DONEM_YILI"`
	EArvAktif                 int    `json:"E_ARV_AKTIF" xml:"E_ARV_AKTIF"`
	EArvMusteriAdZorunluLimit string `json:"E_ARV_MUSTERI_AD_ZORUNLU_LIMIT" xml:"E_ARV_MUSTERI_AD_ZORUNLU_LIMIT"`
	EArvEmailZorunlu          int    `json:"E_ARV_EMAIL_ZORUNLU" xml:"E_ARV_EMAIL_ZORUNLU"`
	KasaTarihSaat             string `json:"KASA_TARIH_SAAT" xml:"KASA_TARIH_SAAT"`
	PCName                    string `json:"PC_NAME" xml:"PC_NAME"`
	WebErisimKullanici        string `json:"WebErisimKullanici" xml:"WebErisimKullanici"`
	WebErisimSifre            string `json:"WebErisimSifre" xml:"WebErisimSifre"`
}

// Limit is the spec's length limit of one string field, and what Build does
// when a value is longer.
type Limit struct {
	Field    string // JSON name
	Max      int    // UTF-16 code units, as the server (.NET) counts them
	Truncate bool   // informational: Build shortens it; otherwise an error
}

// Limits lists every string length limit of the spec (a copy). Fields not
// listed have no limit. See the package documentation for the reasons.
func Limits() []Limit { return append([]Limit(nil), limits...) }

var limits = []Limit{
	{"VERGI_NUMARASI", 35, false},
	{"VERGI_DAIRESI", 50, false},
	{"FIRMA_ADI", 200, false},
	{"SON_YEDEK_ZAMANI", 35, true},
	{"VERSIYON", 35, true},
	{"TPOS_VERSIYON", 30, true},
	{"TPOS_VERSIYON_SIRA", 30, true},
	{"YK_FISCAL_SERI_NO", 40, false},
	{"E_FAT_NO_BAS_KOD", 15, false},
	{"E_ARV_NO_BAS_KOD", 15, false},
	{"KASA_TARIH_SAAT", 35, true},
	{"PC_NAME", 200, true},
}

// FieldError reports a field of Params that cannot be sent: longer than the
// spec allows (Limit, Len in UTF-16 code units) or not valid UTF-8 (Limit
// and Len zero). It never quotes the value.
type FieldError struct {
	Field      string // JSON name, e.g. "VERGI_NUMARASI"
	Limit, Len int
}

func (e *FieldError) Error() string {
	if e.Limit == 0 && e.Len == 0 {
		return fmt.Sprintf("field %s: not valid UTF-8 text", e.Field)
	}
	return fmt.Sprintf("field %s: %d characters, limit %d", e.Field, e.Len, e.Limit)
}

// Store is the static till profile, the [store] section of the config.
type Store struct {
	TaxNumber   string // VERGI_NUMARASI
	TaxOffice   string // VERGI_DAIRESI
	CompanyName string // FIRMA_ADI
	PosNo       int    // POS_NO
	PosType     int    // POS_TIPI
	POSSerial   string // POS_SERI_NO; empty: Facts.ECRSerial

	ReceiptLimit string // FIS_LIMITI

	EInvoiceActive int    // E_FAT_AKTIF
	EInvoicePrefix string // E_FAT_NO_BAS_KOD

	EArchiveActive            int    // E_ARV_AKTIF
	EArchivePrefix            string // E_ARV_NO_BAS_KOD
	EArchiveNameRequiredLimit string // E_ARV_MUSTERI_AD_ZORUNLU_LIMIT
	EArchiveEmailRequired     int    // E_ARV_EMAIL_ZORUNLU

	PeriodYear int // DONEM_YILI; 0: the year of Facts.Now

	TPOSVersion, TPOSVersionSeq string // overrides of Facts'
}

// Facts are what the agent found out about the device and the host.
type Facts struct {
	FiscalSerial string    // YK_FISCAL_SERI_NO: ECHO id, cached or configured
	ECRSerial    string    // default POS_SERI_NO (ECHO tag DFC10C)
	HostName     string    // PC_NAME
	Now          time.Time // KASA_TARIH_SAAT, in its own location; zero: time.Now()
	LastBackup   time.Time // SON_YEDEK_ZAMANI; zero: ""
	AgentVersion string    // VERSIYON

	TPOSVersion, TPOSVersionSeq string // TPOS_VERSIYON, TPOS_VERSIYON_SIRA
}

// Credentials are WebErisimKullanici and WebErisimSifre. The password is
// never printed.
type Credentials struct {
	Username, Password string
}

// String shows the user name and hides the password.
func (c Credentials) String() string {
	return fmt.Sprintf("{Username:%s Password:%s}", c.Username, redactIf(c.Password))
}

// GoString hides the password from %#v.
func (c Credentials) GoString() string {
	return fmt.Sprintf("tposl.Credentials{Username:%q, Password:%q}", c.Username, redactIf(c.Password))
}

type redactedCredentials Credentials

// Format makes every fmt verb print the password as "[REDACTED]".
func (c Credentials) Format(st fmt.State, verb rune) {
	if verb == 'v' && st.Flag('#') {
		_, _ = fmt.Fprint(st, c.GoString())
		return
	}
	r := redactedCredentials(c)
	r.Password = redactIf(c.Password)
	_, _ = fmt.Fprintf(st, fmt.FormatString(st, verb), r)
}

// LogValue hides the password from slog.
func (c Credentials) LogValue() slog.Value {
	return slog.GroupValue(slog.String("username", c.Username), slog.String("password", redactIf(c.Password)))
}

func redactIf(s string) string {
	if s == "" {
		return ""
	}
	return redacted
}

// Build fills all 23 fields of Params from the store profile, the facts
// and the credentials, as the source table in docs/protocols.md says. Strings are
// trimmed of surrounding white space. Informational fields over their
// limit are shortened (on a rune boundary); any other field over its
// limit, or text that is not valid UTF-8, is a *FieldError.
func Build(s Store, f Facts, c Credentials) (Params, error) {
	now := f.Now
	if now.IsZero() {
		now = time.Now()
	}
	year := s.PeriodYear
	if year == 0 {
		year = now.Year()
	}
	backup := ""
	if !f.LastBackup.IsZero() {
		backup = f.LastBackup.Format(TimeLayout)
	}
	p := Params{
		VergiNumarasi:             strings.TrimSpace(s.TaxNumber),
		VergiDairesi:              strings.TrimSpace(s.TaxOffice),
		FirmaAdi:                  strings.TrimSpace(s.CompanyName),
		PosNo:                     s.PosNo,
		PosSeriNo:                 first(s.POSSerial, f.ECRSerial),
		FisLimiti:                 strings.TrimSpace(s.ReceiptLimit),
		SonYedekZamani:            backup,
		PosTipi:                   s.PosType,
		Versiyon:                  strings.TrimSpace(f.AgentVersion),
		TPOSVersiyon:              first(s.TPOSVersion, f.TPOSVersion),
		TPOSVersiyonSira:          first(s.TPOSVersionSeq, f.TPOSVersionSeq),
		YKFiscalSeriNo:            strings.TrimSpace(f.FiscalSerial),
		EFatAktif:                 s.EInvoiceActive,
		EFatNoBasKod:              strings.TrimSpace(s.EInvoicePrefix),
		EArvNoBasKod:              strings.TrimSpace(s.EArchivePrefix),
		DonemYili:                 year,
		EArvAktif:                 s.EArchiveActive,
		EArvMusteriAdZorunluLimit: strings.TrimSpace(s.EArchiveNameRequiredLimit),
		EArvEmailZorunlu:          s.EArchiveEmailRequired,
		KasaTarihSaat:             now.Format(TimeLayout),
		PCName:                    strings.TrimSpace(f.HostName),
		WebErisimKullanici:        c.Username,
		WebErisimSifre:            c.Password,
	}
	for _, l := range limits {
		if !l.Truncate {
			continue
		}
		v := p.field(l.Field)
		if utf8.ValidString(*v) {
			*v = truncateUTF16(*v, l.Max)
		}
	}
	if err := p.Validate(); err != nil {
		return Params{}, fmt.Errorf("build tposl params: %w", err)
	}
	return p, nil
}

func first(override, def string) string {
	if v := strings.TrimSpace(override); v != "" {
		return v
	}
	return strings.TrimSpace(def)
}

// Validate checks every string field for valid UTF-8 and every limit of
// the spec; the first failure is a *FieldError.
func (p Params) Validate() error {
	for _, name := range stringFields {
		v := *p.field(name)
		if !utf8.ValidString(v) {
			return &FieldError{Field: name}
		}
	}
	for _, l := range limits {
		if n := utf16Len(*p.field(l.Field)); n > l.Max {
			return &FieldError{Field: l.Field, Limit: l.Max, Len: n}
		}
	}
	return nil
}

var stringFields = []string{
	"VERGI_NUMARASI", "VERGI_DAIRESI", "FIRMA_ADI", "POS_SERI_NO", "FIS_LIMITI",
	"SON_YEDEK_ZAMANI", "VERSIYON", "TPOS_VERSIYON", "TPOS_VERSIYON_SIRA",
	"YK_FISCAL_SERI_NO", "E_FAT_NO_BAS_KOD", "E_ARV_NO_BAS_KOD",
	"E_ARV_MUSTERI_AD_ZORUNLU_LIMIT", "KASA_TARIH_SAAT", "PC_NAME",
	"WebErisimKullanici", "WebErisimSifre",
}

// field points at a string field by its JSON name.
func (p *Params) field(name string) *string {
	switch name {
	case "VERGI_NUMARASI":
		return &p.VergiNumarasi
	case "VERGI_DAIRESI":
		return &p.VergiDairesi
	case "FIRMA_ADI":
		return &p.FirmaAdi
	case "POS_SERI_NO":
		return &p.PosSeriNo
	case "FIS_LIMITI":
		return &p.FisLimiti
	case "SON_YEDEK_ZAMANI":
		return &p.SonYedekZamani
	case "VERSIYON":
		return &p.Versiyon
	case "TPOS_VERSIYON":
		return &p.TPOSVersiyon
	case "TPOS_VERSIYON_SIRA":
		return &p.TPOSVersiyonSira
	case "YK_FISCAL_SERI_NO":
		return &p.YKFiscalSeriNo
	case "E_FAT_NO_BAS_KOD":
		return &p.EFatNoBasKod
	case "E_ARV_NO_BAS_KOD":
		return &p.EArvNoBasKod
	case "E_ARV_MUSTERI_AD_ZORUNLU_LIMIT":
		return &p.EArvMusteriAdZorunluLimit
	case "KASA_TARIH_SAAT":
		return &p.KasaTarihSaat
	case "PC_NAME":
		return &p.PCName
	case "WebErisimKullanici":
		return &p.WebErisimKullanici
	case "WebErisimSifre":
		return &p.WebErisimSifre
	}
	panic("tposl: unknown field " + name)
}

// utf16Len counts s as .NET's String.Length does.
func utf16Len(s string) int {
	n := 0
	for _, r := range s {
		n += utf16.RuneLen(r)
	}
	return n
}

// truncateUTF16 shortens s to at most max UTF-16 code units without
// splitting a rune.
func truncateUTF16(s string, max int) string {
	n := 0
	for i, r := range s {
		w := utf16.RuneLen(r)
		if n+w > max {
			return s[:i]
		}
		n += w
	}
	return s
}

// redactedParams has Params' fields and none of its methods.
type redactedParams Params

func (p Params) redacted() redactedParams {
	r := redactedParams(p)
	r.WebErisimSifre = redactIf(p.WebErisimSifre)
	return r
}

// String is the %+v form with WebErisimSifre hidden.
func (p Params) String() string {
	return fmt.Sprintf("%+v", p.redacted())
}

// GoString is the %#v form with WebErisimSifre hidden.
func (p Params) GoString() string {
	return strings.Replace(fmt.Sprintf("%#v", p.redacted()), "tposl.redactedParams", "tposl.Params", 1)
}

// Format makes every fmt verb print the redacted form.
func (p Params) Format(st fmt.State, verb rune) {
	if verb == 'v' && st.Flag('#') {
		_, _ = fmt.Fprint(st, p.GoString())
		return
	}
	_, _ = fmt.Fprintf(st, fmt.FormatString(st, verb), p.redacted())
}

// LogValue is what slog records of Params: the identifying fields, never
// the password.
func (p Params) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("fiscal_serial", p.YKFiscalSeriNo),
		slog.String("pos_serial", p.PosSeriNo),
		slog.Int("pos_no", p.PosNo),
		slog.String("tax_number", p.VergiNumarasi),
		slog.String("pc_name", p.PCName),
		slog.String("till_time", p.KasaTarihSaat),
		slog.String("version", p.Versiyon),
		slog.String("user", p.WebErisimKullanici),
		slog.String("password", redactIf(p.WebErisimSifre)),
	)
}

// xmlParams is Params in the element order of the server's data contract
// (base class first, then ordinal), which the server's XML reader needs.
type xmlParams struct {
	XMLName xml.Name `xml:"http://schemas.datacontract.org/2004/07/TriaEFaturaRestServer.Models ParamsTPOSKasaBilgisi"`
	xmlParamsBody
}

// xmlParamsBody is read from any namespace.
type xmlParamsBody struct {
	WebErisimKullanici        string `xml:"WebErisimKullanici"`
	WebErisimSifre            string `xml:"WebErisimSifre"`
	DonemYili                 int    `xml:"DONEM_YILI"`
	EArvAktif                 int    `xml:"E_ARV_AKTIF"`
	EArvEmailZorunlu          int    `xml:"E_ARV_EMAIL_ZORUNLU"`
	EArvMusteriAdZorunluLimit string `xml:"E_ARV_MUSTERI_AD_ZORUNLU_LIMIT"`
	EArvNoBasKod              string `xml:"E_ARV_NO_BAS_KOD"`
	EFatAktif                 int    `xml:"E_FAT_AKTIF"`
	EFatNoBasKod              string `xml:"E_FAT_NO_BAS_KOD"`
	FirmaAdi                  string `xml:"FIRMA_ADI"`
	FisLimiti                 string `xml:"FIS_LIMITI"`
	KasaTarihSaat             string `xml:"KASA_TARIH_SAAT"`
	PCName                    string `xml:"PC_NAME"`
	PosNo                     int    `xml:"POS_NO"`
	PosSeriNo                 string `xml:"POS_SERI_NO"`
	PosTipi                   int    `xml:"POS_TIPI"`
	SonYedekZamani            string `xml:"SON_YEDEK_ZAMANI"`
	TPOSVersiyon              string `xml:"TPOS_VERSIYON"`
	TPOSVersiyonSira          string `xml:"TPOS_VERSIYON_SIRA"`
	VergiDairesi              string `xml:"VERGI_DAIRESI"`
	VergiNumarasi             string `xml:"VERGI_NUMARASI"`
	Versiyon                  string `xml:"VERSIYON"`
	YKFiscalSeriNo            string `xml:"YK_FISCAL_SERI_NO"`
}

// MarshalXML writes <ParamsTPOSKasaBilgisi> in the server's namespace and
// element order.
func (p Params) MarshalXML(e *xml.Encoder, _ xml.StartElement) error {
	x := xmlParams{xmlParamsBody: xmlParamsBody{
		WebErisimKullanici: p.WebErisimKullanici, WebErisimSifre: p.WebErisimSifre,
		DonemYili: p.DonemYili, EArvAktif: p.EArvAktif, EArvEmailZorunlu: p.EArvEmailZorunlu,
		EArvMusteriAdZorunluLimit: p.EArvMusteriAdZorunluLimit, EArvNoBasKod: p.EArvNoBasKod,
		EFatAktif: p.EFatAktif, EFatNoBasKod: p.EFatNoBasKod, FirmaAdi: p.FirmaAdi,
		FisLimiti: p.FisLimiti, KasaTarihSaat: p.KasaTarihSaat, PCName: p.PCName,
		PosNo: p.PosNo, PosSeriNo: p.PosSeriNo, PosTipi: p.PosTipi,
		SonYedekZamani: p.SonYedekZamani, TPOSVersiyon: p.TPOSVersiyon,
		TPOSVersiyonSira: p.TPOSVersiyonSira, VergiDairesi: p.VergiDairesi,
		VergiNumarasi: p.VergiNumarasi, Versiyon: p.Versiyon, YKFiscalSeriNo: p.YKFiscalSeriNo,
	}}
	return e.Encode(x)
}

// UnmarshalXML reads <ParamsTPOSKasaBilgisi> in any element order.
func (p *Params) UnmarshalXML(d *xml.Decoder, start xml.StartElement) error {
	if start.Name.Local != "ParamsTPOSKasaBilgisi" {
		return fmt.Errorf("decode params: element %q is not ParamsTPOSKasaBilgisi", start.Name.Local)
	}
	var x xmlParamsBody
	if err := d.DecodeElement(&x, &start); err != nil {
		return err
	}
	*p = Params{
		VergiNumarasi: x.VergiNumarasi, VergiDairesi: x.VergiDairesi, FirmaAdi: x.FirmaAdi,
		PosNo: x.PosNo, PosSeriNo: x.PosSeriNo, FisLimiti: x.FisLimiti,
		SonYedekZamani: x.SonYedekZamani, PosTipi: x.PosTipi, Versiyon: x.Versiyon,
		TPOSVersiyon: x.TPOSVersiyon, TPOSVersiyonSira: x.TPOSVersiyonSira,
		YKFiscalSeriNo: x.YKFiscalSeriNo, EFatAktif: x.EFatAktif, EFatNoBasKod: x.EFatNoBasKod,
		EArvNoBasKod: x.EArvNoBasKod, DonemYili: x.DonemYili, EArvAktif: x.EArvAktif,
		EArvMusteriAdZorunluLimit: x.EArvMusteriAdZorunluLimit, EArvEmailZorunlu: x.EArvEmailZorunlu,
		KasaTarihSaat: x.KasaTarihSaat, PCName: x.PCName,
		WebErisimKullanici: x.WebErisimKullanici, WebErisimSifre: x.WebErisimSifre,
	}
	return nil
}
