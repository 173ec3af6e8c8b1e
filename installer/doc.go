// Package installer turns the agent into a system service: it runs the
// agent's body under the service manager or in the foreground (Run), writes
// the first configuration, data directory and local API token (Bootstrap),
// renders the systemd unit (RenderUnit) and registers, starts, stops and
// removes the service through github.com/kardianos/service (Manager).
//
// The pieces that touch the machine are separate from the pure ones so that
// tests run without a service manager: Bootstrap works under any root
// directory, RenderUnit and ServiceConfig are pure functions, and the
// Windows service control loop (execute) is platform-neutral.
//
// Paths are never taken from the working directory: a Windows service
// starts in System32. The config and data directory come from
// internal/config (ProgramData on Windows) or from absolute flags.
//
// It imports nothing of agent (not even transitively): what it needs of
// the config comes from internal/config, and the agent's body is handed to
// Run as a function.
package installer
