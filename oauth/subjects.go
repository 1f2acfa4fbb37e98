package oauth

import (
	"crypto/subtle"
	"errors"
	"strings"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/oauth/grants"
)

// Subjects of static users are "static/<method id>/<username>", the
// username with '%', '/', ':', '|' and control characters percent-encoded
// (method ids have no '/'; opaque tokens join "<jti>:<sub>", and
// revocations key "<issuer>|<sub>", so neither may appear). Clients are
// their client id.
const staticSubjectPrefix = "static/"

func staticSubject(methodID, username string) string { return model.StaticSubject(methodID, username) }

// parseStaticSubject splits a static user's subject.
func parseStaticSubject(sub string) (methodID, username string, ok bool) {
	rest, ok := strings.CutPrefix(sub, staticSubjectPrefix)
	if !ok {
		return "", "", false
	}
	methodID, escaped, ok := strings.Cut(rest, "/")
	if !ok || methodID == "" {
		return "", "", false
	}
	var b strings.Builder
	for i := 0; i < len(escaped); i++ {
		if escaped[i] != '%' {
			b.WriteByte(escaped[i])
			continue
		}
		if i+2 >= len(escaped) {
			return "", "", false
		}
		v, ok1 := unhex(escaped[i+1])
		w, ok2 := unhex(escaped[i+2])
		if !ok1 || !ok2 {
			return "", "", false
		}
		b.WriteByte(v<<4 | w)
		i += 2
	}
	return methodID, b.String(), true
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// errNoUser: the subject is not a user of an enabled static method of
// the server.
var errNoUser = errors.New("the user no longer exists at this server")

// staticMethods are the server's enabled static login methods.
func staticMethods(s *model.ServerSpec) []*model.AuthenticationMethod {
	var out []*model.AuthenticationMethod
	for i := range s.Authentications {
		m := &s.Authentications[i]
		if m.Method == model.LoginStatic && !m.Disabled && m.Static != nil {
			out = append(out, m)
		}
	}
	return out
}

// staticUser finds the static user of a subject.
func staticUser(s *model.ServerSpec, sub string) (*model.AuthenticationMethod, *model.StaticUser, error) {
	methodID, username, ok := parseStaticSubject(sub)
	if !ok {
		return nil, nil, errNoUser
	}
	for _, m := range staticMethods(s) {
		if m.ID != methodID {
			continue
		}
		for i := range m.Static.Users {
			if m.Static.Users[i].Username == username {
				return m, &m.Static.Users[i], nil
			}
		}
	}
	return nil, nil, errNoUser
}

// errCredentialChanged: the user's password hash is not the one of the
// login a session or token comes from.
var errCredentialChanged = errors.New("the user's password changed since the login")

// userCurrent checks that sub is still a user of an enabled static
// method of the server and that its password hash has the credential
// version (grants.CredentialVersion) recorded at the login; a record
// without one (made before credential versions) does not pass.
func userCurrent(s *model.ServerSpec, sub, credential string) error {
	_, u, err := staticUser(s, sub)
	if err != nil {
		return err
	}
	if credential == "" || subtle.ConstantTimeCompare([]byte(grants.CredentialVersion(u.PasswordHash)), []byte(credential)) != 1 {
		return errCredentialChanged
	}
	return nil
}
