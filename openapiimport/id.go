package openapiimport

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// maxIDLength is the longest object id (model.ValidObjectID).
const maxIDLength = 128

// APIID is the API id an operationId gives, valid by model.ValidObjectID,
// or "" when nothing usable is left (the API then gets a generated id):
//
//   - accents are dropped after compatibility decomposition (NFKD: "Café"
//     gives "Cafe", full-width "Ｇｅｔ" gives "Get");
//   - every run of other characters outside letters, digits, '.', '_', '~'
//     and '-' (spaces, '/', ':', other scripts…) becomes one '-';
//   - leading characters other than letters and digits are dropped, and so
//     is a '-' left at the end by a replaced run;
//   - an id longer than 128 characters is cut to 119 and ends with '-' and
//     the first 8 hex digits of the SHA-256 of the whole operationId, so
//     long operationIds that share a prefix stay distinct.
//
// Case is kept. Different operationIds can give the same id ("get pet" and
// "get/pet"); Parse refuses such documents.
func APIID(operationID string) string {
	var b strings.Builder
	gap := false
	for _, r := range norm.NFKD.String(operationID) {
		switch {
		case unicode.Is(unicode.Mn, r):
			// A combining mark of the letter before it.
		case idChar(r):
			if gap && b.Len() > 0 {
				b.WriteByte('-')
			}
			gap = false
			b.WriteRune(r)
		default:
			gap = true
		}
	}
	id := strings.TrimLeft(b.String(), "._~-")
	if len(id) > maxIDLength {
		sum := sha256.Sum256([]byte(operationID))
		id = strings.TrimRight(id[:maxIDLength-9], "-") + "-" + hex.EncodeToString(sum[:4])
	}
	return id
}

// idChar reports whether r may appear in an object id.
func idChar(r rune) bool {
	return r < unicode.MaxASCII && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._~-", r))
}
