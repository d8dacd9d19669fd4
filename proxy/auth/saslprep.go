package auth

import (
	"unicode/utf8"

	"github.com/xdg-go/stringprep"
	"golang.org/x/text/unicode/norm"
)

// saslPrep normalizes a password the way PostgreSQL's pg_saslprep does before SCRAM hashing (RFC 4013
// SASLprep), so verifiers and proofs computed here match those of PostgreSQL and libpq. As in PostgreSQL, a
// password that is not valid for SASLprep (invalid UTF-8, prohibited or unassigned code points, bad
// bidirectional text, empty after mapping) is used as-is, and an ASCII password is always used as-is.
//
// The tables are RFC 3454's, from github.com/xdg-go/stringprep (Unicode 3.2, the version SASLprep and
// PostgreSQL use, unassigned code points included). The steps are written out here rather than taken
// from stringprep.SASLprep.Prepare because PostgreSQL checks prohibited code points and bidirectional
// text on the mapped string before NFKC normalization, where the RFC (and Prepare) check the normalized
// one; a password on which the two orders disagree must be treated as PostgreSQL treats it.
func saslPrep(password string) string {
	ascii := true
	for i := 0; i < len(password); i++ {
		if password[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii || !utf8.ValidString(password) {
		return password
	}
	// Step 1, map: non-ASCII spaces (C.1.2) become U+0020, characters "commonly mapped to nothing" (B.1)
	// disappear.
	mapped := make([]rune, 0, len(password))
	for _, r := range password {
		switch {
		case stringprep.TableC1_2.Contains(r):
			mapped = append(mapped, ' ')
		case isMappedToNothing(r):
		default:
			mapped = append(mapped, r)
		}
	}
	if len(mapped) == 0 {
		return password
	}
	// Step 3, prohibit (checked on the mapped text, as PostgreSQL does), unassigned code points (A.1)
	// included.
	randAL := false
	for _, r := range mapped {
		if prohibitedOutput(r) {
			return password
		}
		if stringprep.TableD1.Contains(r) {
			randAL = true
		}
	}
	// Step 4, bidi: a string with right-to-left characters (D.1) has no left-to-right ones (D.2) and
	// starts and ends with a right-to-left character.
	if randAL {
		for _, r := range mapped {
			if stringprep.TableD2.Contains(r) {
				return password
			}
		}
		if !stringprep.TableD1.Contains(mapped[0]) || !stringprep.TableD1.Contains(mapped[len(mapped)-1]) {
			return password
		}
	}
	// Step 2, normalize with NFKC.
	return norm.NFKC.String(string(mapped))
}

func isMappedToNothing(r rune) bool {
	to, ok := stringprep.TableB1.Map(r)
	return ok && len(to) == 0
}

// prohibitedSets are SASLprep's prohibited output (RFC 4013 section 2.3) and the unassigned code points
// of Unicode 3.2 (table A.1), which PostgreSQL prohibits too.
var prohibitedSets = []stringprep.Set{
	stringprep.TableA1,
	stringprep.TableC1_2, stringprep.TableC2_1, stringprep.TableC2_2, stringprep.TableC3, stringprep.TableC4,
	stringprep.TableC5, stringprep.TableC6, stringprep.TableC7, stringprep.TableC8, stringprep.TableC9,
}

func prohibitedOutput(r rune) bool {
	for _, s := range prohibitedSets {
		if s.Contains(r) {
			return true
		}
	}
	return false
}
