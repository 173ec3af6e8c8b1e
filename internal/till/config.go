package till

import (
	"time"

	"github.com/tposagent/tposagent/internal/config"
)

// Servers is what a till under test talks to, and its local API token.
type Servers struct {
	TPOSLURL, TPOSLUser, TPOSLPassword              string
	OduyoURL, OduyoUser, OduyoAPIKey, OduyoPassword string
	Token                                           string
}

// FiscalSerial is the fiscal id of the tills Config makes (they read no
// device; the config carries it).
const FiscalSerial = "JI20012345"

// Config is the configuration the test tills and the demo share: the
// sample store (Turkish in its names), the two servers, no device with
// the fiscal serial FiscalSerial, the local API on a free loopback port,
// retries capped at a second, a short reconnect jitter and debug logs.
// Each caller then changes what its scenario needs.
func Config(dataDir string, s Servers) config.Config {
	c := config.Default()
	c.DataDir = dataDir
	c.Store = config.Store{TaxNumber: "1234567890", TaxOffice: "Kadıköy", CompanyName: "Örnek Gıda A.Ş.", PosNo: 1, PosType: 1, ReceiptLimit: "5000"}
	c.TPOSL.URL, c.TPOSL.Username, c.TPOSL.Password = s.TPOSLURL, s.TPOSLUser, config.Secret(s.TPOSLPassword)
	c.Oduyo.BaseURL, c.Oduyo.Username = s.OduyoURL, s.OduyoUser
	c.Oduyo.APIKey, c.Oduyo.Password = config.Secret(s.OduyoAPIKey), config.Secret(s.OduyoPassword)
	c.Device.Port, c.Device.FiscalSerial = "none", FiscalSerial
	c.API.Listen, c.API.Token = "127.0.0.1:0", config.Secret(s.Token)
	c.Outbox.RetryMax = config.Duration{Duration: time.Second}
	c.Outbox.ReconnectJitter = config.Duration{Duration: 100 * time.Millisecond}
	c.Log.Level = "debug"
	return c
}
