// Package license holds the licence state the agent reports: the value
// that the TPOSL client (agent/tposl) computes from the server's answer and
// that the local API (agent/localapi) serves, so that the API needs no
// part of the TPOSL client. It imports nothing of the agent.
package license

import "time"

// State is the licence state of the till.
type State string

// The licence states, as docs/protocols.md lists them.
const (
	Licensed     State = "licensed"
	Demo         State = "demo"
	Expired      State = "expired"
	Inactive     State = "inactive"
	Mismatch     State = "mismatch"
	Unregistered State = "unregistered"
	StateUnknown State = "unknown"
)

// Usable reports whether the POS may run: licensed or demo.
func (s State) Usable() bool { return s == Licensed || s == Demo }

// ExitCode is the exit code of `tposagent license` for the state: 0
// licensed or demo, 3 expired, inactive, mismatch or unregistered, 4
// unknown (and anything unrecognised).
func (s State) ExitCode() int {
	switch s {
	case Licensed, Demo:
		return 0
	case Expired, Inactive, Mismatch, Unregistered:
		return 3
	}
	return 4
}

// Registered reports whether the server knows this till: it answered with
// Status true (every state but unregistered and unknown).
func (l License) Registered() bool {
	return l.State != Unregistered && l.State != StateUnknown && l.State != ""
}

// Sources of a License.
const (
	SourceServer = "server" // the server answered just now
	SourceCache  = "cache"  // the last good answer, re-evaluated
	SourceNone   = "none"   // nothing to go on
)

// License is the licence state the agent reports (GET /v1/license).
type License struct {
	State State `json:"state"`
	// DaysLeft: demo: days left, 0 on the last day (-1 if the start date
	// was unreadable); expired: 0; otherwise -1 (not applicable/unknown).
	DaysLeft      int       `json:"days_left"`
	CheckedAt     time.Time `json:"checked_at"` // when the server answered
	Source        string    `json:"source"`     // "server", "cache", "none"
	Message       string    `json:"message"`    // one line for a person
	LicenseStatus int       `json:"license_status"`
	GMP3          GMP3      `json:"gmp3"`

	FiscalSerial         string `json:"fiscal_serial,omitempty"`          // ours
	ApprovedFiscalSerial string `json:"approved_fiscal_serial,omitempty"` // OnayFiscalSeriNo
	RegistrationID       int    `json:"registration_id,omitempty"`        // Id
	DealerCode           string `json:"dealer_code,omitempty"`            // BayiKodu
	ProgramCode          string `json:"program_code,omitempty"`           // ProgramKodu
	Module               string `json:"module,omitempty"`                 // LisansModul
	DemoDays             int    `json:"demo_days,omitempty"`              // DemoLisansGun
	DemoStart            string `json:"demo_start,omitempty"`             // 2006-01-02
	DemoEnd              string `json:"demo_end,omitempty"`               // last day of the demo
	ErrorCode            int    `json:"error_code,omitempty"`             // ErrorMessageCode
	ErrorMessage         string `json:"error_message,omitempty"`          // ErrorMessage
}

// GMP3 is the status of the GMP-3 module licence.
type GMP3 struct {
	Active bool `json:"active"`
	// DaysLeft until GMP3ExpDate, 0 on the day of expiry and after it; -1
	// when there is no readable date.
	DaysLeft int    `json:"days_left"`
	ExpDate  string `json:"exp_date,omitempty"` // 2006-01-02, or as received if unreadable
	Status   int    `json:"status"`             // raw GMP3Status
}
