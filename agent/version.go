package agent

// Build information, stamped in by the linker:
//
//	go build -ldflags "-X github.com/tposagent/tposagent/agent.Version=1.2.3 \
//	  -X github.com/tposagent/tposagent/agent.Commit=abc123 \
//	  -X github.com/tposagent/tposagent/agent.BuildDate=2026-11-23"
var (
	Version   = "0.0.0-dev"
	Commit    = "unknown"
	BuildDate = "unknown"
)
