package websocket

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// readmePath is the repository's README, which states defaults and shows
// the package's first example.
const readmePath = "../README.md"

// readmeHandshake is how the README states the handshake timeout, in its
// list of limits: "..., 10 s for the handshake; ...". The closing
// handshake's timeout reads "5 s for the closing handshake" and does not
// match.
var readmeHandshake = regexp.MustCompile(`(\d+) s for the handshake\b`)

// TestHandshakeTimeoutDocumented checks that Accept and Dial have the same
// handshake timeout by default, DefaultHandshakeTimeout, and that the
// README states that duration. (Dial had an unexported 30 s of its own
// while the README said 10 s.)
func TestHandshakeTimeoutDocumented(t *testing.T) {
	accept := (&AcceptOptions{}).handshakeTimeout()
	dial := (&DialOptions{}).handshakeTimeout()
	if accept != DefaultHandshakeTimeout || dial != DefaultHandshakeTimeout {
		t.Errorf("default handshake timeouts: Accept %v, Dial %v; want both DefaultHandshakeTimeout (%v)",
			accept, dial, DefaultHandshakeTimeout)
	}

	readme, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	ms := readmeHandshake.FindAllStringSubmatch(string(readme), -1)
	if len(ms) != 1 {
		t.Fatalf("%s states the handshake timeout %d times in the form %q, want once (update this test if the wording changed): %q",
			readmePath, len(ms), readmeHandshake, ms)
	}
	secs, err := strconv.Atoi(ms[0][1])
	if err != nil {
		t.Fatal(err)
	}
	if stated := time.Duration(secs) * time.Second; stated != DefaultHandshakeTimeout || stated != dial || stated != accept {
		t.Errorf("%s says %q, but the handshake timeout is %v for Accept and %v for Dial (DefaultHandshakeTimeout %v)",
			readmePath, ms[0][0], accept, dial, DefaultHandshakeTimeout)
	}
}

// TestREADMEExampleIsTested checks that the echo handler of the README's
// server example is, word for word, readmeEcho in readme_example_test.go,
// which TestREADMEExampleEchoesEachType compiles and runs. Whitespace is
// not compared; comments are.
func TestREADMEExampleIsTested(t *testing.T) {
	readme, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	var server []string
	for _, m := range regexp.MustCompile("(?s)```go\n(.*?)```").FindAllStringSubmatch(string(readme), -1) {
		if strings.Contains(m[1], "websocket.Open(") {
			server = append(server, m[1])
		}
	}
	if len(server) != 1 {
		t.Fatalf("%s has %d ```go blocks that call websocket.Open, want 1 (the server example)", readmePath, len(server))
	}
	inREADME, err := funcText("README.md", []byte(server[0]), "echo")
	if err != nil {
		t.Fatalf("the README's server example: %v", err)
	}
	src, err := os.ReadFile("readme_example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	inTest, err := funcText("readme_example_test.go", src, "readmeEcho")
	if err != nil {
		t.Fatal(err)
	}
	if normalizeSpace(inREADME) != normalizeSpace(inTest) {
		t.Errorf("the README's echo handler and readmeEcho (readme_example_test.go) differ; make them the same, so that the README shows tested code.\nREADME:\n%s\nreadme_example_test.go:\n%s",
			inREADME, inTest)
	}
}

// funcText returns the source of the function name in the Go file src,
// from its parameters to the end of its body: what a copy under another
// name has in common with it.
func funcText(filename string, src []byte, name string) (string, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, filename, src, parser.ParseComments)
	if err != nil {
		return "", err
	}
	for _, d := range f.Decls {
		if fd, ok := d.(*ast.FuncDecl); ok && fd.Name.Name == name && fd.Body != nil {
			return string(src[fset.Position(fd.Type.Params.Pos()).Offset:fset.Position(fd.Body.End()).Offset]), nil
		}
	}
	return "", &os.PathError{Op: "find func " + name, Path: filename, Err: os.ErrNotExist}
}

func normalizeSpace(s string) string { return strings.Join(strings.Fields(s), " ") }
