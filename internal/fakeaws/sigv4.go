package fakeaws

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// authRE reads a SigV4 Authorization header.
var authRE = regexp.MustCompile(`^AWS4-HMAC-SHA256 Credential=([^/,]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})$`)

// checkSignature returns the access key ID of r's signature and, when k
// checks signatures, whether the signature is right for r and body: the
// signature AWS would compute (Signature Version 4: canonical request, with
// the SHA-256 of the body, string to sign, derived key), as the services
// check it. Called with k.mu held.
func (k *Kinesis) checkSignature(r *http.Request, body []byte) (string, error) {
	m := authRE.FindStringSubmatch(r.Header.Get("Authorization"))
	if m == nil {
		if k.secrets == nil {
			return "", nil
		}
		return "", errors.New("no SigV4 Authorization header")
	}
	akid, date, region, service, signed, sig := m[1], m[2], m[3], m[4], m[5], m[6]
	if k.secrets == nil {
		return akid, nil
	}
	secret, ok := k.secrets[akid]
	if !ok {
		return akid, fmt.Errorf("unknown access key ID %s", akid)
	}
	amzDate := r.Header.Get("X-Amz-Date")
	if !strings.HasPrefix(amzDate, date) {
		return akid, fmt.Errorf("X-Amz-Date %q is not of the credential's date %s", amzDate, date)
	}
	names := strings.Split(signed, ";")
	if !slices.IsSorted(names) || !slices.Contains(names, "host") {
		return akid, fmt.Errorf("SignedHeaders %q: not sorted, or without host", signed)
	}
	var canon strings.Builder
	canon.WriteString(r.Method + "\n")
	path := r.URL.EscapedPath()
	if path == "" {
		path = "/"
	}
	canon.WriteString(path + "\n")
	canon.WriteString(r.URL.Query().Encode() + "\n")
	for _, name := range names {
		var values []string
		switch name {
		case "host":
			values = []string{r.Host}
		case "content-length":
			values = []string{strconv.FormatInt(r.ContentLength, 10)}
		default:
			values = r.Header.Values(name)
		}
		for i, v := range values {
			values[i] = strings.Join(strings.Fields(v), " ")
		}
		canon.WriteString(name + ":" + strings.Join(values, ",") + "\n")
	}
	canon.WriteString("\n" + signed + "\n")
	payload := sha256.Sum256(body)
	canon.WriteString(hex.EncodeToString(payload[:]))
	creq := sha256.Sum256([]byte(canon.String()))
	scope := date + "/" + region + "/" + service + "/aws4_request"
	toSign := "AWS4-HMAC-SHA256\n" + amzDate + "\n" + scope + "\n" + hex.EncodeToString(creq[:])
	key := []byte("AWS4" + secret)
	for _, part := range []string{date, region, service, "aws4_request"} {
		key = hmacSHA256(key, part)
	}
	want := hex.EncodeToString(hmacSHA256(key, toSign))
	if !hmac.Equal([]byte(want), []byte(sig)) {
		return akid, errors.New("the request signature does not match (payload hash or headers differ)")
	}
	return akid, nil
}

func hmacSHA256(key []byte, s string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(s))
	return h.Sum(nil)
}
