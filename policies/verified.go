package policies

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
)

// VerifiedBundle is a verified bundle as the authorizer activates it.
type VerifiedBundle struct {
	Manifest bundle.Manifest
	// Modules are the parsed modules, keyed as bundle.Bundle.ParsedModules
	// keys them.
	Modules map[string]*ast.Module
	// Data is the data document (JSON-typed, as util.UnmarshalJSON
	// returns it).
	Data map[string]any
	// Digest identifies the content: ContentDigest of the bundle.
	Digest string
}

// dataFile is the bundle's one data file, as the signature names it.
const dataFile = "data.json"

// ReadVerifiedBundle is ReadBundle followed by ContentDigest, for a bundle
// that must be signed with vc's key, reading data.json once instead of
// three times: OPA's reader verifies the signature and every other file,
// data.json is parsed here (decodeJSON, as util.UnmarshalJSON would), and
// one walk of the parsed document computes
// both its signature hash (compared with the signed one, as OPA's reader
// would) and its part of the digest. Bundles other than Gatehouse's (data
// files besides /data.json, a delta bundle) are read with ReadBundle.
// bundleName is the name Modules are keyed under.
func ReadVerifiedBundle(raw []byte, vc *bundle.VerificationConfig, bundleName string) (*VerifiedBundle, error) {
	if vc == nil {
		return nil, errors.New("read bundle: a verification key is required")
	}
	lazy := *vc
	lazy.Exclude = append(slices.Clip(vc.Exclude), dataFile)
	if len(vc.Exclude) > 0 {
		return readVerifiedSlowly(raw, vc, bundleName)
	}
	b, err := bundle.NewReader(bytes.NewReader(raw)).WithRegoVersion(ast.RegoV1).
		WithBundleVerificationConfig(&lazy).WithLazyLoadingMode(true).Read()
	if err != nil {
		return nil, err
	}
	var dataRaw []byte
	seen := false
	for _, r := range b.Raw {
		switch {
		case strings.HasSuffix(r.Path, bundle.RegoExt):
		case r.Path == "/"+dataFile && !seen:
			dataRaw, seen = r.Value, true
		default:
			return readVerifiedSlowly(raw, vc, bundleName)
		}
	}
	if b.Type() != bundle.SnapshotBundleType {
		return readVerifiedSlowly(raw, vc, bundleName)
	}
	data := map[string]any{}
	if seen {
		v, err := decodeJSON(dataRaw)
		if err != nil {
			return nil, fmt.Errorf("bundle load failed on /%s: %w", dataFile, err)
		}
		obj, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("bundle load failed on /%s: root value must be object", dataFile)
		}
		data = obj
	}
	if err := checkDataRoots(data, *b.Manifest.Roots); err != nil {
		return nil, err
	}

	// The digest: the manifest, the data and the modules, each as
	// encoding/json encodes it (ContentDigest).
	digest := sha256.New()
	enc := json.NewEncoder(digest)
	if err := enc.Encode(b.Manifest); err != nil {
		return nil, fmt.Errorf("bundle digest: %w", err)
	}
	var sig hash.Hash
	var want []byte
	if seen && len(b.Signatures.Signatures) > 0 {
		files, err := bundle.VerifyBundleSignature(b.Signatures, vc)
		if err != nil {
			return nil, err
		}
		fi, ok := files[dataFile]
		if !ok {
			return nil, fmt.Errorf("file %v not included in bundle signature", dataFile)
		}
		if want, err = hex.DecodeString(fi.Hash); err != nil {
			return nil, err
		}
		if sig = newSignatureHash(fi.Algorithm); sig == nil {
			// An algorithm Gatehouse does not sign with: OPA's hasher.
			h, err := bundle.NewSignatureHasher(bundle.HashingAlgorithm(fi.Algorithm))
			if err != nil {
				return nil, err
			}
			got, err := h.HashFile(data)
			if err != nil {
				return nil, err
			}
			if !bytes.Equal(want, got) {
				return nil, fmt.Errorf("%v: digest mismatch (want: %x, got: %x)", dataFile, want, got)
			}
		}
	}
	w := &jsonHashes{signed: sig, legacy: digest}
	if err := w.value(data); err != nil {
		return nil, fmt.Errorf("bundle digest: %w", err)
	}
	w.legacyBuf = append(w.legacyBuf, '\n')
	w.flush(0)
	if sig != nil {
		if got := sig.Sum(nil); !bytes.Equal(want, got) {
			return nil, fmt.Errorf("%v: digest mismatch (want: %x, got: %x)", dataFile, want, got)
		}
	}
	if err := enc.Encode(digestModules(&b)); err != nil {
		return nil, fmt.Errorf("bundle digest: %w", err)
	}
	return &VerifiedBundle{Manifest: b.Manifest, Modules: b.ParsedModules(bundleName), Data: data,
		Digest: "sha256:" + hex.EncodeToString(digest.Sum(nil))}, nil
}

// readVerifiedSlowly is ReadVerifiedBundle with ReadBundle and
// ContentDigest.
func readVerifiedSlowly(raw []byte, vc *bundle.VerificationConfig, bundleName string) (*VerifiedBundle, error) {
	b, err := ReadBundle(raw, vc)
	if err != nil {
		return nil, err
	}
	digest, err := ContentDigest(&b)
	if err != nil {
		return nil, err
	}
	return &VerifiedBundle{Manifest: b.Manifest, Modules: b.ParsedModules(bundleName), Data: b.Data, Digest: digest}, nil
}

// checkDataRoots is the check of the data against the manifest's roots
// that OPA's reader leaves out in lazy loading mode.
func checkDataRoots(data map[string]any, roots []string) error {
	var walk func(path string, node any) error
	walk = func(path string, node any) error {
		trimmed := strings.Trim(path, "/")
		if bundle.RootPathsContain(roots, trimmed) {
			return nil
		}
		obj, ok := node.(map[string]any)
		if !ok {
			return fmt.Errorf("manifest roots %v do not permit data at path '/%s' (hint: check bundle directory structure)", roots, trimmed)
		}
		for i := range roots {
			if bundle.RootPathsContain(strings.Split(trimmed, "/"), roots[i]) {
				for k, v := range obj {
					if err := walk(path+"/"+k, v); err != nil {
						return err
					}
				}
				return nil
			}
		}
		return fmt.Errorf("manifest roots %v do not permit data at path '/%s' (hint: check bundle directory structure)", roots, trimmed)
	}
	return walk("", data)
}

// ContentDigest identifies a verified bundle's content (manifest, data,
// modules) independently of its archive encoding: the SHA-256 of the
// manifest, the data and the modules' paths and sources, each encoded by
// encoding/json. The authorizer keeps it as its high-water mark's digest.
func ContentDigest(b *bundle.Bundle) (string, error) {
	h := sha256.New()
	enc := json.NewEncoder(h)
	for _, v := range []any{b.Manifest, b.Data, digestModules(b)} {
		if err := enc.Encode(v); err != nil {
			return "", fmt.Errorf("bundle digest: %w", err)
		}
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

type digestModule struct {
	Path string `json:"path"`
	Raw  []byte `json:"raw"`
}

func digestModules(b *bundle.Bundle) []digestModule {
	mods := make([]digestModule, 0, len(b.Modules))
	for _, m := range b.Modules {
		mods = append(mods, digestModule{m.Path, m.Raw})
	}
	slices.SortFunc(mods, func(a, b digestModule) int { return strings.Compare(a.Path, b.Path) })
	return mods
}

// newSignatureHash is the hash of a signed file's algorithm, for those
// Gatehouse signs with (nil for others).
func newSignatureHash(alg string) hash.Hash {
	if alg == string(bundle.SHA256) {
		return sha256.New()
	}
	return nil
}

// jsonHashes writes a JSON-typed document twice: to signed as OPA's
// bundle signature hasher walks it (compact, object keys sorted, strings
// as encoding/json writes them without HTML escaping) and to legacy as
// encoding/json encodes it (the same, with HTML escaping). signed may be
// nil.
type jsonHashes struct {
	signed, legacy       hash.Hash
	signedBuf, legacyBuf []byte
	// keys are the sorted keys of the objects being written, by depth.
	keys  [][]string
	depth int
}

func (w *jsonHashes) flush(limit int) {
	if len(w.signedBuf) > limit {
		if w.signed != nil {
			w.signed.Write(w.signedBuf)
		}
		w.signedBuf = w.signedBuf[:0]
	}
	if len(w.legacyBuf) > limit {
		w.legacy.Write(w.legacyBuf)
		w.legacyBuf = w.legacyBuf[:0]
	}
}

func (w *jsonHashes) both(s string) {
	w.signedBuf = append(w.signedBuf, s...)
	w.legacyBuf = append(w.legacyBuf, s...)
}

func (w *jsonHashes) value(v any) error {
	w.flush(32 << 10)
	switch x := v.(type) {
	case map[string]any:
		if w.depth == len(w.keys) {
			w.keys = append(w.keys, nil)
		}
		keys := w.keys[w.depth][:0]
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		w.keys[w.depth] = keys
		w.depth++
		defer func() { w.depth-- }()
		w.both("{")
		for i, k := range keys {
			if i > 0 {
				w.both(",")
			}
			w.string(k)
			w.both(":")
			if err := w.value(x[k]); err != nil {
				return err
			}
		}
		w.both("}")
	case []any:
		w.both("[")
		for i, e := range x {
			if i > 0 {
				w.both(",")
			}
			if err := w.value(e); err != nil {
				return err
			}
		}
		w.both("]")
	case string:
		w.string(x)
	case json.Number:
		if x == "" {
			x = "0"
		}
		if !IsValidNumber(string(x)) {
			return fmt.Errorf("invalid number literal %q", string(x))
		}
		w.both(string(x))
	case bool:
		if x {
			w.both("true")
		} else {
			w.both("false")
		}
	case nil:
		w.both("null")
	default:
		// Not produced by util.UnmarshalJSON: what the encoders write.
		var s, l bytes.Buffer
		se := json.NewEncoder(&s)
		se.SetEscapeHTML(false)
		if err := se.Encode(x); err != nil {
			return err
		}
		if err := json.NewEncoder(&l).Encode(x); err != nil {
			return err
		}
		w.signedBuf = append(w.signedBuf, bytes.TrimRight(s.Bytes(), "\n")...)
		w.legacyBuf = append(w.legacyBuf, bytes.TrimRight(l.Bytes(), "\n")...)
	}
	return nil
}

// string writes s as encoding/json does: to signed without HTML escaping,
// to legacy with it.
func (w *jsonHashes) string(s string) {
	n := len(w.signedBuf)
	w.signedBuf = appendJSONString(w.signedBuf, s, false)
	if strings.ContainsAny(s, "<>&") {
		w.legacyBuf = appendJSONString(w.legacyBuf, s, true)
	} else {
		w.legacyBuf = append(w.legacyBuf, w.signedBuf[n:]...)
	}
}

// appendJSONString is encoding/json's string encoding: control characters,
// '"' and '\\' escaped (and '<', '>' and '&' with escapeHTML), invalid
// UTF-8 as U+FFFD, U+2028 and U+2029 escaped.
func appendJSONString(dst []byte, s string, escapeHTML bool) []byte {
	const hexDigits = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && (!escapeHTML || (b != '<' && b != '>' && b != '&')) {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	return append(append(dst, s[start:]...), '"')
}

// IsValidNumber is encoding/json's check of a json.Number: whether s is
// a JSON number literal.
func IsValidNumber(s string) bool {
	if s == "" {
		return false
	}
	if s[0] == '-' {
		if s = s[1:]; s == "" {
			return false
		}
	}
	switch {
	case s[0] == '0':
		s = s[1:]
	case '1' <= s[0] && s[0] <= '9':
		s = s[1:]
		for len(s) > 0 && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
		}
	default:
		return false
	}
	if len(s) >= 2 && s[0] == '.' && '0' <= s[1] && s[1] <= '9' {
		s = s[2:]
		for len(s) > 0 && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
		}
	}
	if len(s) >= 2 && (s[0] == 'e' || s[0] == 'E') {
		s = s[1:]
		if s[0] == '+' || s[0] == '-' {
			if s = s[1:]; s == "" {
				return false
			}
		}
		for len(s) > 0 && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
		}
	}
	return s == ""
}
