package deploy_test

import (
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// unitFile maps "Section.Key" to the values of every assignment, in order.
type unitFile map[string][]string

func parseUnit(t *testing.T, name string) unitFile {
	t.Helper()
	u := unitFile{}
	section := ""
	for i, line := range strings.Split(string(readFile(t, name)), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[' && line[len(line)-1] == ']':
			section = line[1 : len(line)-1]
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" || strings.HasSuffix(line, `\`) {
				t.Fatalf("%s:%d: not a key=value line in a section", name, i+1)
			}
			u[section+"."+strings.TrimSpace(k)] = append(u[section+"."+strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	return u
}

func (u unitFile) last(key string) string {
	if v := u[key]; len(v) > 0 {
		return v[len(v)-1]
	}
	return ""
}

// envFile parses VAR=value lines; commented-out assignments (#VAR=...) count too,
// since operators uncomment them.
func envFile(t *testing.T, name string) (set, commented map[string]string) {
	t.Helper()
	set, commented = map[string]string{}, map[string]string{}
	assign := regexp.MustCompile(`^(#?)([A-Z][A-Z0-9_]*)=(.*)$`)
	for i, line := range strings.Split(string(readFile(t, name)), "\n") {
		line = strings.TrimSpace(line)
		if m := assign.FindStringSubmatch(line); m != nil {
			if m[1] == "" {
				set[m[2]] = m[3]
			} else {
				commented[m[2]] = m[3]
			}
		} else if line != "" && line[0] != '#' {
			t.Errorf("%s:%d: not VAR=value", name, i+1)
		}
	}
	return set, commented
}

func TestSystemdUnit(t *testing.T) {
	u := parseUnit(t, "systemd/revoker.service")
	exact := map[string]string{
		"Service.DynamicUser":             "yes",
		"Service.NoNewPrivileges":         "yes",
		"Service.ProtectSystem":           "strict",
		"Service.ProtectHome":             "yes",
		"Service.PrivateTmp":              "yes",
		"Service.PrivateDevices":          "yes",
		"Service.CapabilityBoundingSet":   "",
		"Service.AmbientCapabilities":     "",
		"Service.RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
		"Service.EnvironmentFile":         "/etc/revoker/revoker.env",
		"Service.Restart":                 "on-failure",
		"Service.RestrictNamespaces":      "yes",
		"Service.RestrictSUIDSGID":        "yes",
		"Service.LockPersonality":         "yes",
		"Service.MemoryDenyWriteExecute":  "yes",
		"Service.ProtectKernelTunables":   "yes",
		"Service.ProtectKernelModules":    "yes",
		"Service.ProtectControlGroups":    "yes",
		"Service.SystemCallArchitectures": "native",
		"Install.WantedBy":                "multi-user.target",
	}
	for k, want := range exact {
		if _, ok := u[k]; !ok {
			t.Errorf("%s is not set", k)
		} else if got := u.last(k); got != want {
			t.Errorf("%s=%s, want %q", k, got, want)
		}
	}
	if !slices.Contains(u["Service.SystemCallFilter"], "@system-service") {
		t.Errorf("SystemCallFilter %q lacks @system-service", u["Service.SystemCallFilter"])
	}
	if u.last("Service.User") != "" || u.last("Service.Group") != "" {
		t.Error("User= or Group= set next to DynamicUser=yes")
	}
	// The mode comes from the environment, so that revoker check with revoker.env
	// judges the same one.
	if exec := strings.Fields(u.last("Service.ExecStart")); len(exec) != 2 || exec[1] != "run" {
		t.Errorf("ExecStart %q, want revoker run, the mode from %s", exec, noProvisionEnv)
	}

	// Key files come in as credentials; the environment points at them.
	creds := map[string]string{}
	for _, c := range u["Service.LoadCredential"] {
		id, path, _ := strings.Cut(c, ":")
		creds[id] = path
	}
	env := map[string]string{}
	for _, e := range u["Service.Environment"] {
		k, v, _ := strings.Cut(strings.Trim(e, `"`), "=")
		if !knownEnv(t)[k] {
			t.Errorf("Environment=%s: revoker does not read %s", e, k)
		}
		env[k] = v
	}
	set, _ := envFile(t, "systemd/revoker.env.example")
	for where, v := range map[string]string{"the unit's Environment=": env[noProvisionEnv], "revoker.env.example": set[noProvisionEnv]} {
		if on, err := strconv.ParseBool(v); err != nil || !on {
			t.Errorf("%s: %s=%q, want true (the worker user may not create streams)", where, noProvisionEnv, v)
		}
	}
	if creds["kalshi.pem"] != "/etc/revoker/kalshi.pem" || env[privateKeyEnv] != "%d/kalshi.pem" {
		t.Errorf("want LoadCredential=kalshi.pem:/etc/revoker/kalshi.pem and %s=%%d/kalshi.pem, got %v and %q", privateKeyEnv, creds, env[privateKeyEnv])
	}
	for k, v := range env {
		if id, ok := strings.CutPrefix(v, "%d/"); ok && creds[id] == "" {
			t.Errorf("%s=%s names a credential that is not loaded", k, v)
		}
	}

	// Stopping leaves time to finish an attempt, publish and drain.
	attempt, err1 := time.ParseDuration(set["REVOKER_ATTEMPT_TIMEOUT"])
	stop, err2 := time.ParseDuration(u.last("Service.TimeoutStopSec"))
	if err1 != nil || err2 != nil || stop < attempt+30*time.Second {
		t.Errorf("TimeoutStopSec=%s with REVOKER_ATTEMPT_TIMEOUT=%s: want at least the attempt timeout + 30s", u.last("Service.TimeoutStopSec"), set["REVOKER_ATTEMPT_TIMEOUT"])
	}
}

func TestSystemdEnvExample(t *testing.T) {
	set, commented := envFile(t, "systemd/revoker.env.example")
	if len(set) == 0 {
		t.Fatal("revoker.env.example sets nothing")
	}
	for _, vars := range []map[string]string{set, commented} {
		for k := range vars {
			if !knownEnv(t)[k] {
				t.Errorf("revoker.env.example sets %s, which revoker does not read", k)
			}
		}
	}
	// EnvironmentFile= overrides Environment=: these would replace the credentials.
	for _, k := range []string{privateKeyEnv, "KALSHI_PRIVATE_KEY", "NATS_NKEY_SEED", "NATS_CREDS"} {
		if _, ok := set[k]; ok {
			t.Errorf("revoker.env.example sets %s, overriding the unit's credential", k)
		}
	}
	if set["KALSHI_API_KEY_ID"] == "" || set["NATS_URL"] == "" {
		t.Error("revoker.env.example lacks KALSHI_API_KEY_ID or NATS_URL")
	}
}
