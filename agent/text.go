package agent

import (
	"github.com/tposagent/tposagent/internal/textsafe"
)

// safeText makes every string of v (a status or a licence about to be
// served) safe to show: terminal control characters removed and any
// configured secret — passwords, the api key, the api token — a server
// echoed in its text replaced. The log, the status page and bugreport
// scrub secrets on their own; this covers /v1/status, /v1/license and so
// the CLI. v's maps, slices and pointed-to structs are replaced by cleaned
// copies (a snapshot may share them with the agent's state).
func (a *Agent) safeText(v any) {
	sec := textsafe.NewSecrets(a.cfg.Secrets()...)
	textsafe.Strings(v, sec.Text)
}
