package main

import (
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/tposagent/tposagent/agent"
	"github.com/tposagent/tposagent/agent/localapi"
	"github.com/tposagent/tposagent/internal/atomicfile"
	"github.com/tposagent/tposagent/internal/config"
)

// apiClient reads the config for the local API's address and token. It
// does not validate the rest: a client needs only these two keys.
func apiClient(e *env) (*localapi.Client, error) {
	cfg, err := config.Read(e.configPath)
	if err != nil {
		return nil, err
	}
	if cfg.API.Token == "" {
		return nil, fmt.Errorf("config %s has no api.token (set it, or TPOSAGENT_API_TOKEN)", cfg.Path)
	}
	base, err := apiBaseURL(cfg)
	if err != nil {
		return nil, err
	}
	// The client proves the agent before it sends the token (GET
	// /v1/hello); when that fails, the agent's own note on its port says
	// whether it is waiting for the port.
	return &localapi.Client{BaseURL: base, Token: cfg.API.Token.Reveal(), AgentNote: func() string {
		b, err := atomicfile.ReadFile(filepath.Join(cfg.DataDir, agent.APIWaitFile))
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(b))
	}}, nil
}

// apiBaseURL is the URL of the running agent's local API ("http://host:port").
func apiBaseURL(cfg *config.Config) (string, error) {
	listen := cfg.API.Listen
	if strings.HasSuffix(listen, ":0") {
		b, err := atomicfile.ReadFile(filepath.Join(cfg.DataDir, agent.APIAddrFile))
		if err != nil {
			return "", fmt.Errorf("api.listen has port 0 and %s is unreadable: %w (is the agent running?)", agent.APIAddrFile, err)
		}
		listen = strings.TrimSpace(string(b))
	}
	return localapi.BaseURLFor(listen), nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func fmtTime(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "never"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}
