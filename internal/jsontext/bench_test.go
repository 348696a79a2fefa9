package jsontext

import (
	"encoding/json"
	"testing"
)

var benchObject = []byte(`{"host":"10.12.34.56","ident":"-","authuser":"-","datetime":"26/Nov/2026:20:12:34 +0000","request":"GET /api/v1/users/42/profile HTTP/1.1","response":"200","bytes":"12345","referrer":"-","agent":"Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0","hostname":"web-1"}`)

func BenchmarkIsObject(b *testing.B) {
	b.SetBytes(int64(len(benchObject)))
	for b.Loop() {
		if !IsObject(benchObject) {
			b.Fatal("not an object")
		}
	}
}

func BenchmarkEncodingJSONValid(b *testing.B) {
	b.SetBytes(int64(len(benchObject)))
	for b.Loop() {
		if !json.Valid(benchObject) {
			b.Fatal("not valid")
		}
	}
}

func BenchmarkAppendString(b *testing.B) {
	s := []byte("Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0")
	b.SetBytes(int64(len(s)))
	var dst []byte
	for b.Loop() {
		dst = AppendString(dst[:0], s)
	}
}

func BenchmarkAppendStringAccessLog(b *testing.B) {
	s := []byte(`10.12.34.56 - - [26/Nov/2026:20:12:34 +0000] "GET /api/v1/users/42/profile HTTP/1.1" 200 12345 "-" "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"           `)
	b.SetBytes(int64(len(s)))
	var dst []byte
	for b.Loop() {
		dst = AppendString(dst[:0], s)
	}
}
