package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const pgBase = `
[component]
jid = "push2.example.org"
address = "127.0.0.1:5347"
secret = "s3cret-value"
domains = ["example.org"]
`

func writeDSN(t *testing.T, dsn string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "dsn")
	if err := os.WriteFile(p, []byte(dsn+"\n"), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestStoreKindConfig: [store] kind = "postgres" takes dsn or dsn_file;
// the DSN's password is kept private (a dsn_file others may read is
// refused, like admin.token_file; an inline DSN with a password needs a
// private config file), and no error shows the password.
func TestStoreKindConfig(t *testing.T) {
	const secret = "pg-Secret-77"
	dsn := "postgres://push2:" + secret + "@127.0.0.1:5432/push2"
	cfg, err := loadConfig(writeConfig(t, pgBase+"[store]\nkind = \"postgres\"\ndsn_file = \""+writeDSN(t, dsn, 0o600)+"\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Store.Kind != "postgres" || cfg.Store.DSN != dsn {
		t.Errorf("store config %+v", cfg.Store)
	}
	if w := cfg.storeWhere(); strings.Contains(w, secret) || !strings.Contains(w, "127.0.0.1:5432/push2") {
		t.Errorf("storeWhere %q", w)
	}
	if cfg, err := loadConfig(writeConfig(t, pgBase)); err != nil || cfg.Store.Kind != "pebble" {
		t.Errorf("default kind %q %v, want pebble", cfg.Store.Kind, err)
	}

	// An inline DSN in a private config file is accepted.
	if _, err := loadConfig(writeConfig(t, pgBase+"[store]\nkind = \"postgres\"\ndsn = \""+dsn+"\"\n")); err != nil {
		t.Errorf("inline DSN in a 0600 config: %v", err)
	}
	publicCfg := func(body string) string {
		p := writeConfig(t, body)
		if err := os.Chmod(p, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// Without a password, a public config file is fine.
	if _, err := loadConfig(publicCfg(pgBase + "[store]\nkind = \"postgres\"\ndsn = \"host=/run/postgresql dbname=push2\"\n")); err != nil {
		t.Errorf("password-less DSN in a 0644 config: %v", err)
	}
	for name, tc := range map[string]struct{ path, want string }{
		"dsn_file readable by others": {writeConfig(t, pgBase+"[store]\nkind = \"postgres\"\ndsn_file = \""+writeDSN(t, dsn, 0o644)+"\"\n"), "chmod 600"},
		"dsn_file readable by group":  {writeConfig(t, pgBase+"[store]\nkind = \"postgres\"\ndsn_file = \""+writeDSN(t, dsn, 0o640)+"\"\n"), "accessible by group or others"},
		"dsn_file missing":            {writeConfig(t, pgBase+"[store]\nkind = \"postgres\"\ndsn_file = \"/nonexistent/dsn\"\n"), "store.dsn_file"},
		"dsn_file empty":              {writeConfig(t, pgBase+"[store]\nkind = \"postgres\"\ndsn_file = \""+writeDSN(t, "", 0o600)+"\"\n"), "is empty"},
		"both":                        {writeConfig(t, pgBase+"[store]\nkind = \"postgres\"\ndsn = \""+dsn+"\"\ndsn_file = \""+writeDSN(t, dsn, 0o600)+"\"\n"), "not both"},
		"inline password, public":     {publicCfg(pgBase + "[store]\nkind = \"postgres\"\ndsn = \"" + dsn + "\"\n"), "move the DSN to store.dsn_file"},
		"inline key=value password":   {publicCfg(pgBase + "[store]\nkind = \"postgres\"\ndsn = \"host=db password=" + secret + "\"\n"), "move the DSN to store.dsn_file"},
		"no dsn":                      {writeConfig(t, pgBase+"[store]\nkind = \"postgres\"\n"), "store.dsn (or dsn_file) is required"},
		"unknown kind":                {writeConfig(t, pgBase+"[store]\nkind = \"mysql\"\n"), `store.kind "mysql"`},
	} {
		_, err := loadConfig(tc.path)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("%s: the error shows the password: %v", name, err)
		}
	}
}
