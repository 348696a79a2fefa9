package awsconf

import (
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

func TestConfig_Validate(t *testing.T) {
	const role = "arn:aws:iam::123456789012:role/writer"
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want []string // "" for none
	}{
		{"defaults", func(*Config) {}, nil},
		{"everything set", func(c *Config) {
			*c = Config{Region: "eu-west-1", Endpoint: "https://vpce.example", Profile: "p", RoleARN: role,
				ExternalID: "e", RoleSessionName: "sess", STSEndpoint: "http://127.0.0.1:1"}
		}, nil},
		{"region", func(c *Config) { c.Region = "US East" }, []string{`region: "US East" is not a region name`}},
		{"endpoint scheme", func(c *Config) { c.Endpoint = "ftp://x" }, []string{`endpoint: scheme "ftp" not supported (want http or https)`}},
		{"endpoint without host", func(c *Config) { c.Endpoint = "http:///x" }, []string{`endpoint: no host in "http:///x"`}},
		{"endpoint unparsable", func(c *Config) { c.Endpoint = "http://[::1" }, []string{`endpoint: "http://[::1": want http://HOST[:PORT] or https://HOST[:PORT] (missing ']' in host)`}},
		{"endpoint port out of range", func(c *Config) { c.Endpoint = "http://127.0.0.1:700000" }, []string{`endpoint: bad port "700000" in "http://127.0.0.1:700000" (1 to 65535)`}},
		{"endpoint with port", func(c *Config) { c.Endpoint = "http://127.0.0.1:4567" }, nil},
		{"endpoint without scheme", func(c *Config) { c.Endpoint = "127.0.0.1:4567" }, []string{`endpoint: "127.0.0.1:4567": want http://HOST[:PORT] or https://HOST[:PORT] (first path segment in URL cannot contain colon)`}},
		{"endpoint host:port without scheme", func(c *Config) { c.Endpoint = "localhost:4567" }, []string{`endpoint: "localhost:4567": want http://HOST[:PORT] or https://HOST[:PORT] (no scheme)`}},
		{"role_arn", func(c *Config) { c.RoleARN = "writer" }, []string{"role_arn: not an IAM role ARN (want arn:aws:iam::ACCOUNT:role/NAME): it does not start with arn:; the value (6 characters) is not shown"}},
		{"external_id without role", func(c *Config) { c.ExternalID = "s3cr3t" }, []string{"external_id: set without role_arn"}},
		{"sts_endpoint without role", func(c *Config) { c.STSEndpoint = "https://sts.example" }, []string{"sts_endpoint: set without role_arn"}},
		{"sts_endpoint scheme", func(c *Config) { c.RoleARN, c.STSEndpoint = role, "sts.example" }, []string{`sts_endpoint: scheme "" not supported`}},
		{"role_session_name short", func(c *Config) { c.RoleSessionName = "x" }, []string{"role_session_name: 1 characters, want 2 to 64"}},
		{"role_session_name long", func(c *Config) { c.RoleSessionName = strings.Repeat("x", 65) }, []string{"role_session_name: 65 characters, want 2 to 64"}},
		{"every problem at once", func(c *Config) { *c = Config{Region: "X", ExternalID: "s3cr3t", STSEndpoint: "ftp://y"} },
			[]string{"region:", "external_id: set without role_arn", `sts_endpoint: scheme "ftp"`, "sts_endpoint: set without role_arn"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.mod(&c)
			err := c.Validate()
			if len(tc.want) == 0 {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			for _, w := range tc.want {
				require.ErrorContains(t, err, w)
			}
			require.Len(t, err.(interface{ Unwrap() []error }).Unwrap(), len(tc.want), "one error a problem")
			require.NotContains(t, err.Error(), "s3cr3t", "external_id is a secret")
		})
	}
}

// A role_arn that is not a role's ARN is reported by what is wrong with
// it, never quoted: it may be a secret pasted into the wrong key (the URL
// form masks it too). Endpoints lose their user information and query.
func TestConfig_ValidateNeverQuotesABadRoleARN(t *testing.T) {
	const secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	for _, tc := range []struct{ value, why string }{
		{secret, "it does not start with arn:"},
		{"AKIAIOSFODNN7EXAMPLE:" + secret, "it does not start with arn:"},
		{"arn:" + secret, "it does not have the six parts"},
		{"arn:aws:s3:::" + secret, "its service is not iam"},
		{"arn:aws:iam:us-east-1:123456789012:role/" + secret, "it names a region"},
		{"arn::iam::123456789012:role/" + secret, "its partition is empty"},
		{"arn:aws:iam:::role/" + secret, "its account is empty"},
		{"arn:aws:iam::123456789012:user/" + secret, "its resource is not role/NAME"},
		{"arn:aws:iam::123456789012:role/", "its resource is not role/NAME"},
	} {
		err := Config{RoleARN: tc.value}.Validate()
		require.Error(t, err, tc.value)
		require.ErrorContains(t, err, "role_arn: not an IAM role ARN (want arn:aws:iam::ACCOUNT:role/NAME): "+tc.why)
		require.NotContains(t, err.Error(), "wJalr", "nothing of the value is shown")
		require.NotContains(t, err.Error(), "AKIA")
	}
	for _, ok := range []string{"arn:aws:iam::123456789012:role/writer", "arn:aws-cn:iam::123456789012:role/service-role/w", "arn:aws-us-gov:iam::1:role/r"} {
		require.NoError(t, Config{RoleARN: ok}.Validate(), ok)
	}
	for _, ep := range []string{"ftp://u:" + secret + "@vpce.example", "https://u:" + secret + "@:70000/x", "https://vpce.example:99999/?sig=" + secret, "http://u:" + secret + "@[::1"} {
		err := Config{Endpoint: ep, RoleARN: "arn:aws:iam::123456789012:role/w", STSEndpoint: ep}.Validate()
		require.Error(t, err, ep)
		require.NotContains(t, err.Error(), "wJalr", ep)
	}
}

func TestConfig_Defaults(t *testing.T) {
	require.Equal(t, "kplagent", DefaultConfig().RoleSessionName)
	require.Equal(t, DefaultConfig(), Config{}.WithDefaults())
	require.Equal(t, "mine", Config{RoleSessionName: "mine"}.WithDefaults().RoleSessionName, "a set value is kept")
}

// SetParam knows every YAML key of Config, so that a setting added to
// Config is a URL parameter of kinesis:// and firehose:// too.
func TestConfig_SetParamKnowsEveryKey(t *testing.T) {
	ct := reflect.TypeFor[Config]()
	for i := range ct.NumField() {
		key, _, _ := strings.Cut(ct.Field(i).Tag.Get("yaml"), ",")
		var c Config
		require.True(t, c.SetParam(key, "v-"+key), key)
		want := Config{}
		reflect.ValueOf(&want).Elem().Field(i).SetString("v-" + key)
		require.Equal(t, want, c, "%s sets %s", key, ct.Field(i).Name)
	}
	c := DefaultConfig()
	require.False(t, c.SetParam("stream", "x"))
	require.False(t, c.SetParam("Region", "x"), "keys are the YAML keys")
	require.Equal(t, DefaultConfig(), c, "unknown keys change nothing")
}

// Embedded inline, Config's keys are the block's own, decoded strictly.
func TestConfig_InlineInABlock(t *testing.T) {
	type block struct {
		Stream string `yaml:"stream"`
		Config `yaml:",inline"`
	}
	decode := func(src string) (block, error) {
		b := block{Config: DefaultConfig()}
		dec := yaml.NewDecoder(strings.NewReader(src))
		dec.KnownFields(true)
		return b, dec.Decode(&b)
	}
	b, err := decode("{stream: s, region: eu-west-1, role_arn: 'arn:aws:iam::1:role/r', sts_endpoint: 'https://sts.example'}")
	require.NoError(t, err)
	require.Equal(t, block{Stream: "s", Config: Config{Region: "eu-west-1", RoleARN: "arn:aws:iam::1:role/r",
		RoleSessionName: "kplagent", STSEndpoint: "https://sts.example"}}, b)
	_, err = decode("{stream: s, aws: {region: eu-west-1}}")
	require.ErrorContains(t, err, "field aws not found")
}
