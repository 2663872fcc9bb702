package interop

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	// maxMessage is the largest message any test sends.
	maxMessage = 16 << 20
	// ourReadLimit is the ReadLimit of our side: exactly the largest message,
	// since ReadLimit is documented as the max bytes per message (inclusive).
	ourReadLimit = maxMessage
	// peerReadLimit is the read limit given to the peers: comfortably above
	// the largest message so that their limit is never what a test measures.
	peerReadLimit = 32 << 20

	// opTimeout bounds one operation (a dial, a 16 MiB write, a read...).
	opTimeout = 60 * time.Second
	// connTimeout bounds the whole life of one test connection on the servers.
	connTimeout = 3 * time.Minute
	// obsTimeout bounds the wait for a server's observation of a connection end.
	obsTimeout = 20 * time.Second
	// fragBufSize is the chunk size of the streaming echoes: odd, so that
	// fragment boundaries fall inside multi-byte UTF-8 sequences.
	fragBufSize = 1000
)

// Message sizes every peer is tested with: frame length encodings
// (7-bit/16-bit/64-bit boundaries) and large messages.
var sizes = []int{0, 1, 125, 126, 65535, 65536, 1 << 20, 16 << 20}

// Close codes tested in both directions.
var closeCodes = []int{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999}

// closeReason is the reason sent with code (the same in the python and node scripts).
func closeReason(code int) string { return fmt.Sprintf("reason %d ✓", code) }

// Message modes (the case name prefix, the same in every peer script):
//
//	whole:     both sides send every message as one frame
//	peer-frag: the peer sends the message fragmented, our side echoes it whole
//	our-frag:  the peer sends the message whole, our side sends it back
//	           fragmented (our Writer)
var modes = []string{"whole", "peer-frag", "our-frag"}

var kinds = []string{"text", "binary"}

// Every message case runs twice: "plain", where the peer neither offers nor
// accepts permessage-deflate, and "deflate", where it does (our side uses its
// defaults, whatever they are: the frames on the wire say what was negotiated).
var compressions = []string{"plain", "deflate"}

func msgCase(comp, mode, kind string, size int) string {
	if comp == "plain" {
		return fmt.Sprintf("%s-%s-%d", mode, kind, size)
	}
	return fmt.Sprintf("%s-%s-%s-%d", comp, mode, kind, size)
}

// fragChunk is the fragment size used by the peers sending fragmented messages:
// at least 3 fragments for sizes > 2, at most 4093 bytes (odd, to split runes).
func fragChunk(n int) int {
	c := n/3 + 1
	if c > 4093 {
		c = 4093
	}
	return c
}

// ---------------------------------------------------------------- payloads

var textAlphabet = []string{
	"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q",
	"r", "s", "t", "u", "v", "w", "x", "y", "z", "0", "1", "2", "3", "4", "5", "6", "7", " ",
	"é", "ß", "€", "漢", "😀", "𝄞", "ж",
}

var payloadCache sync.Map // key string -> []byte

// payload returns a deterministic message of n bytes: valid UTF-8 mixing 1 to
// 4 byte sequences for text, all byte values for binary. Callers must not
// modify it (use clone).
func payload(kind string, n int) []byte {
	key := fmt.Sprintf("%s/%d", kind, n)
	if v, ok := payloadCache.Load(key); ok {
		return v.([]byte)
	}
	var block []byte
	if kind == "text" {
		for i := 0; len(block) < 4000; i++ {
			block = append(block, textAlphabet[(i*7+i/5)%len(textAlphabet)]...)
		}
	} else {
		block = make([]byte, 4093)
		for i := range block {
			block[i] = byte(i*131 + i/256)
		}
	}
	p := make([]byte, n)
	for off := 0; off < n; off += copy(p[off:], block) {
	}
	if kind == "text" && n > 0 {
		// Do not end inside a multi-byte sequence.
		j := n - 1
		for j > 0 && n-j < 4 && p[j]&0xC0 == 0x80 {
			j--
		}
		if !utf8.FullRune(p[j:]) {
			for k := j; k < n; k++ {
				p[k] = '.'
			}
		}
	}
	payloadCache.Store(key, p)
	return p
}

func clone(p []byte) []byte { return append([]byte(nil), p...) }

func sha(p []byte) string {
	h := sha256.Sum256(p)
	return hex.EncodeToString(h[:])
}

// checkEcho compares a received message with the one sent, byte for byte (by hash).
func checkEcho(t *testing.T, wantKind string, want []byte, gotKind string, got []byte) {
	t.Helper()
	if gotKind != wantKind {
		t.Errorf("received a %s message, want %s", gotKind, wantKind)
	}
	if len(got) != len(want) {
		t.Errorf("received %d bytes, want %d", len(got), len(want))
	}
	if sha(got) != sha(want) {
		i := 0
		for i < len(got) && i < len(want) && got[i] == want[i] {
			i++
		}
		t.Errorf("content differs (sha256 %s, want %s), first difference at byte %d", sha(got), sha(want), i)
	}
}

func TestPayloads(t *testing.T) {
	for _, n := range sizes {
		for _, kind := range kinds {
			p := payload(kind, n)
			if len(p) != n {
				t.Fatalf("%s/%d: len %d", kind, n, len(p))
			}
			if kind == "text" && !utf8.Valid(p) {
				t.Fatalf("text/%d: invalid UTF-8", n)
			}
			if bytes.HasPrefix(p, []byte("#")) {
				t.Fatalf("%s/%d starts with '#'", kind, n)
			}
		}
	}
	if utf8.ValidString(string(payload("binary", 4096))) {
		t.Fatal("binary payload is valid UTF-8: it does not cover all byte values")
	}
}

// ---------------------------------------------------------------- observations

// obs is what a server saw at the end of one test connection.
type obs struct {
	code   int    // close code received (0 if none)
	reason string // close reason received
	err    error  // the error that ended the server's read loop (or of its Close)
	note   string // free text (e.g. the close code its Close echo got)
}

// obsStore collects the servers' observations by case name (the "case" query
// parameter of the connection), whatever the order of put and wait.
type obsStore struct {
	mu sync.Mutex
	m  map[string]chan obs
}

func (s *obsStore) ch(name string) chan obs {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = make(map[string]chan obs)
	}
	c, ok := s.m[name]
	if !ok {
		c = make(chan obs, 4)
		s.m[name] = c
	}
	return c
}

func (s *obsStore) put(name string, o obs) {
	select {
	case s.ch(name) <- o:
	default:
	}
}

func (s *obsStore) wait(t *testing.T, name string) (obs, bool) {
	t.Helper()
	select {
	case o := <-s.ch(name):
		return o, true
	case <-time.After(obsTimeout):
		t.Errorf("server: no observation for case %q within %v", name, obsTimeout)
		return obs{}, false
	}
}

// ---------------------------------------------------------------- helpers

func opCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), opTimeout)
}

// parseCmd parses the control messages of the echo servers:
//
//	#cmd ping                 the server pings the client, then sends "#ok ping"
//	                          (or "#err ping: ...")
//	#cmd close CODE REASON    the server closes with CODE and REASON
func parseCmd(p []byte) (cmd string, code int, reason string, ok bool) {
	s, found := strings.CutPrefix(string(p), "#cmd ")
	if !found {
		return "", 0, "", false
	}
	if s == "ping" {
		return "ping", 0, "", true
	}
	if rest, found := strings.CutPrefix(s, "close "); found {
		num, reason, _ := strings.Cut(rest, " ")
		if _, err := fmt.Sscanf(num, "%d", &code); err != nil {
			return "", 0, "", false
		}
		return "close", code, reason, true
	}
	return "", 0, "", false
}

// queryChunk returns the chunk query parameter (default fragBufSize).
func queryChunk(r *http.Request) int {
	n, err := strconv.Atoi(r.URL.Query().Get("chunk"))
	if err != nil || n <= 0 {
		return fragBufSize
	}
	return n
}

func closeCmd(code int) []byte {
	return []byte(fmt.Sprintf("#cmd close %d %s", code, closeReason(code)))
}
