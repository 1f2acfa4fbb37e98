package tests

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The tutorials: each document's shell blocks, run in order as one bash
// script against a fresh `gatehouse serve`.
var tutorials = []string{"README.md", "docs/envoy.md", "docs/bundles.md", "docs/authorizer.md", "docs/operations.md", "docs/authoring.md"}

// tutorialMarker is the HTML comment that may precede a fenced block:
// `<!-- tutorial: skip -->` (not run: a foreground command, an example of
// another setup) or `<!-- tutorial: requires envoy -->` (run only when
// that program is on PATH).
var tutorialMarker = regexp.MustCompile(`^<!--\s*tutorial:\s*(skip|requires\s+[\w.-]+)\s*-->$`)

// tutorialBlock is one fenced shell block of a document.
type tutorialBlock struct {
	Line     int    // the opening fence's line number
	Script   string // the block's text
	Skip     bool   // marked skip
	Requires string // a program the block needs
}

// tutorialBlocks extracts the ```sh and ```bash blocks of a Markdown
// document, with the marker of each.
func tutorialBlocks(doc []byte) ([]tutorialBlock, error) {
	var (
		blocks  []tutorialBlock
		cur     *tutorialBlock
		body    strings.Builder
		fence   string
		inOther bool
		marker  string // the last marker, until the next non-blank line
	)
	sc := bufio.NewScanner(bytes.NewReader(doc))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case cur != nil:
			if trimmed == fence {
				cur.Script = body.String()
				blocks = append(blocks, *cur)
				cur, body = nil, strings.Builder{}
				continue
			}
			body.WriteString(line)
			body.WriteByte('\n')
		case inOther:
			if trimmed == fence {
				inOther = false
			}
		case strings.HasPrefix(trimmed, "```"):
			fence = trimmed[:strings.LastIndex(trimmed, "`")+1]
			info := strings.Fields(strings.TrimLeft(trimmed, "`"))
			lang := ""
			if len(info) > 0 {
				lang = info[0]
			}
			if lang == "sh" || lang == "bash" {
				if line != trimmed {
					return nil, fmt.Errorf("line %d: an indented shell block; tutorials' blocks start at the margin", n)
				}
				cur = &tutorialBlock{Line: n}
				if m := tutorialMarker.FindStringSubmatch(marker); m != nil {
					if m[1] == "skip" {
						cur.Skip = true
					} else {
						cur.Requires = strings.TrimSpace(strings.TrimPrefix(m[1], "requires"))
					}
				}
			} else {
				inOther = true
			}
			marker = ""
		case trimmed == "":
		case strings.HasPrefix(trimmed, "<!--") && strings.Contains(trimmed, "tutorial:"):
			if !tutorialMarker.MatchString(trimmed) {
				return nil, fmt.Errorf("line %d: unknown tutorial marker %q", n, trimmed)
			}
			marker = trimmed
		default:
			marker = ""
		}
	}
	if cur != nil || inOther {
		return nil, fmt.Errorf("unclosed code block (fence %q)", fence)
	}
	return blocks, sc.Err()
}

func TestTutorialBlocks(t *testing.T) {
	doc := "intro\n\n```sh\necho one\n```\n\n<!-- tutorial: skip -->\n```sh\nmake run\n```\n" +
		"```\noutput\n```\n<!-- tutorial: requires envoy -->\n\n```bash\nenvoy -c x\n```\n```yaml\na: 1\n```\n" +
		"<!-- tutorial: skip -->\nprose\n```sh\necho two\n```\n"
	blocks, err := tutorialBlocks([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	want := []tutorialBlock{
		{Line: 3, Script: "echo one\n"},
		{Line: 8, Script: "make run\n", Skip: true},
		{Line: 16, Script: "envoy -c x\n", Requires: "envoy"},
		{Line: 24, Script: "echo two\n"},
	}
	if fmt.Sprint(blocks) != fmt.Sprint(want) {
		t.Fatalf("blocks:\n%v\nwant\n%v", blocks, want)
	}
	if _, err := tutorialBlocks([]byte("<!-- tutorial: later -->\n```sh\nx\n```\n")); err == nil {
		t.Fatal("an unknown marker was accepted")
	}
	if _, err := tutorialBlocks([]byte("```sh\nx\n")); err == nil {
		t.Fatal("an unclosed block was accepted")
	}
}

// TestTutorials runs every tutorial verbatim: the shell blocks of each
// document, in order, in one `bash` (with set -euo pipefail), from a
// directory holding bin/gatehouse, against a fresh `gatehouse serve` on
// free ports — the `make run` of the README's quick start. The variables
// the tutorials default (GATEHOUSE_URL, the addresses of what they start)
// are set to free ports, so nothing here uses a fixed port. A tutorial
// must stop what it starts: a process left running fails it.
func TestTutorials(t *testing.T) {
	binDir := filepath.Join(t.TempDir(), "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(gatehouseBin, filepath.Join(binDir, "gatehouse")); err != nil {
		t.Fatal(err)
	}
	for _, doc := range tutorials {
		t.Run(strings.NewReplacer("/", "_", ".md", "").Replace(doc), func(t *testing.T) {
			t.Parallel()
			raw, err := os.ReadFile(filepath.Join("..", doc))
			if err != nil {
				t.Fatal(err)
			}
			blocks, err := tutorialBlocks(raw)
			if err != nil {
				t.Fatalf("%s: %v", doc, err)
			}
			var script strings.Builder
			script.WriteString("set -euo pipefail\n")
			ran := 0
			for _, b := range blocks {
				switch {
				case b.Skip:
					continue
				case b.Requires == "opa":
					if err := os.Symlink(stockOPA(t), filepath.Join(binDir, "opa")); err != nil && !os.IsExist(err) {
						t.Fatal(err)
					}
				case b.Requires != "":
					if _, err := exec.LookPath(b.Requires); err != nil {
						t.Logf("%s:%d: not run: %s is not installed", doc, b.Line, b.Requires)
						continue
					}
				}
				fmt.Fprintf(&script, "# %s:%d\n%s", doc, b.Line, b.Script)
				ran++
			}
			if ran == 0 {
				t.Fatalf("%s: no shell block to run", doc)
			}
			runTutorial(t, doc, binDir, script.String())
		})
	}
}

// runTutorial runs script with bash in a fresh directory beside a fresh
// serve.
func runTutorial(t *testing.T, doc, binDir, script string) {
	// The repository root as the tutorial sees it: bin/gatehouse (what
	// make run built) and gatehouse-data (serve's data directory).
	root := t.TempDir()
	if err := os.Symlink(binDir, filepath.Join(root, "bin")); err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(root, "gatehouse-data")
	authz := freeAddr(t)
	serve := startServe(t, serveOptions{DataDir: dataDir, Args: []string{"--authz-addr", authz, "--authorizer-address", authz}})

	env := []string{
		"PATH=" + binDir + string(os.PathListSeparator) + os.Getenv("PATH"),
		"HOME=" + t.TempDir(),
		"TMPDIR=" + t.TempDir(),
		"LANG=C.UTF-8",
		"GATEHOUSE_URL=" + serve.URL,
		"GATEHOUSE_DATA_DIR=" + dataDir,
	}
	for _, name := range []string{"PETS_ADDR", "EDGE_AUTHZ_ADDR", "EDGE_HEALTH_ADDR", "EDGE_PROXY_ADDR", "OPA_ADDR",
		"TLS_HTTP_ADDR", "TLS_XDS_ADDR", "TLS_AUTHZ_ADDR", "TLS_HEALTH_ADDR"} {
		env = append(env, name+"="+freeAddr(t))
	}
	env = append(env, "ENVOY_PORT="+strings.TrimPrefix(freeAddr(t), "127.0.0.1:"))

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-x", "-c", script)
	cmd.Dir, cmd.Env = root, env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// A file, not a pipe: what the script leaves running holds its
	// output open, and Run must not wait for that.
	out, err := os.Create(filepath.Join(t.TempDir(), "output"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err = cmd.Run()
	// What the tutorial started and did not stop is still in its process
	// group.
	leftover := syscall.Kill(-cmd.Process.Pid, 0) == nil
	if leftover {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	if err != nil || leftover || t.Failed() {
		output, _ := os.ReadFile(out.Name())
		t.Errorf("%s (%s): %v; processes left running: %v\nthe script's output (bash -x):\n%s", doc, time.Since(start).Round(time.Millisecond), err, leftover, tail(string(output), 20000))
		return
	}
	t.Logf("%s ran in %s", doc, time.Since(start).Round(time.Millisecond))
}
