package main

import (
	"github.com/tposagent/tposagent/internal/config"
	"github.com/tposagent/tposagent/internal/textsafe"
)

// cliSecrets are the secrets of the config the CLI reads (none when it
// cannot be read).
func cliSecrets(e *env) textsafe.Secrets {
	cfg, err := config.Read(e.configPath)
	if err != nil {
		return textsafe.NewSecrets()
	}
	return textsafe.NewSecrets(cfg.Secrets()...)
}

// forTerminal cleans every string of v (a status or a licence the agent
// served) before the CLI prints it, as text or JSON: a server's words may
// carry escape sequences or echo a secret, and an agent of an earlier
// version passes them on. See internal/textsafe.
func forTerminal(v any, sec textsafe.Secrets) { textsafe.Strings(v, sec.Text) }
