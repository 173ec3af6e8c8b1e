package installer

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Prompter asks for missing values on a terminal.
type Prompter struct {
	In  io.Reader
	Out io.Writer
	// ReadSecret reads one line without echo (golang.org/x/term); nil
	// reads from In with echo.
	ReadSecret func() (string, error)

	r *bufio.Reader
}

// Ask prompts for f and returns the answer, trimmed. It is meant as
// BootstrapOptions.Ask.
func (p *Prompter) Ask(f Field) (string, error) {
	if p.r == nil {
		p.r = bufio.NewReader(p.In)
	}
	fmt.Fprintf(p.Out, "%s (%s): ", f.Usage, f.Key)
	if f.Secret && p.ReadSecret != nil {
		v, err := p.ReadSecret()
		fmt.Fprintln(p.Out)
		if err != nil {
			return "", fmt.Errorf("read %s: %w", f.Key, err)
		}
		return strings.TrimSpace(v), nil
	}
	line, err := p.r.ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		return "", fmt.Errorf("read %s: %w", f.Key, err)
	}
	return strings.TrimSpace(line), nil
}
