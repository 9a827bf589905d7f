package registry

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// DockerConfig holds the registry credentials of a docker config.json —
// what `docker login` writes. Read by hand rather than with docker/cli's
// config package: the format is small and stable, and that module would
// bring in a large dependency tree for ~80 lines of reading.
type DockerConfig struct {
	Auths       map[string]dockerAuth `json:"auths"`
	CredsStore  string                `json:"credsStore"`
	CredHelpers map[string]string     `json:"credHelpers"`
}

type dockerAuth struct {
	Auth          string `json:"auth"`
	Username      string `json:"username"`
	Password      string `json:"password"`
	IdentityToken string `json:"identitytoken"`
}

// DefaultDockerConfig is the config.json docker reads:
// $DOCKER_CONFIG/config.json, else ~/.docker/config.json.
func DefaultDockerConfig() string {
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		return filepath.Join(d, "config.json")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".docker", "config.json")
}

// LoadDockerConfig reads the config.json at path; a missing file is an
// empty config.
func LoadDockerConfig(path string) (*DockerConfig, error) {
	c := &DockerConfig{}
	if path == "" {
		return c, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, c); err != nil {
		return nil, fmt.Errorf("docker config %s: %w", path, err)
	}
	return c, nil
}

// dockerHubKeys are the names docker uses for Docker Hub's credentials.
var dockerHubKeys = []string{"https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io"}

// Credentials returns the username and secret for host (host[:port]) —
// from a credential helper when one is configured for it, else from auths.
// A username of "" with a secret means an identity token. No entry gives
// empty strings and no error: the registry is tried anonymously.
func (c *DockerConfig) Credentials(host string) (user, secret string, err error) {
	keys := []string{host, "https://" + host, "http://" + host, "https://" + host + "/v1/", "https://" + host + "/v2/"}
	if host == "docker.io" || host == "registry-1.docker.io" {
		keys = dockerHubKeys
	}
	helper := c.CredsStore
	for _, k := range keys {
		if h, ok := c.CredHelpers[k]; ok {
			helper = h
			break
		}
	}
	if helper != "" {
		return helperCredentials(helper, keys[0])
	}
	for _, k := range keys {
		a, ok := c.Auths[k]
		if !ok {
			continue
		}
		if a.IdentityToken != "" {
			return "", a.IdentityToken, nil
		}
		if a.Auth != "" {
			b, err := base64.StdEncoding.DecodeString(a.Auth)
			if err != nil {
				return "", "", fmt.Errorf("docker config: auths[%s].auth is not base64: %w", k, err)
			}
			u, p, ok := strings.Cut(string(b), ":")
			if !ok {
				return "", "", fmt.Errorf("docker config: auths[%s].auth is not user:password", k)
			}
			return u, p, nil
		}
		return a.Username, a.Password, nil
	}
	return "", "", nil
}

// helperCredentials asks docker-credential-NAME, as docker does: the server
// on stdin, {"Username","Secret"} on stdout; "<token>" as the username
// means the secret is an identity token.
func helperCredentials(name, server string) (string, string, error) {
	cmd := exec.Command("docker-credential-"+name, "get")
	cmd.Stdin = strings.NewReader(server)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(string(out) + stderr.String())
		if strings.Contains(msg, "credentials not found") {
			return "", "", nil
		}
		return "", "", fmt.Errorf("credential helper docker-credential-%s for %s: %w: %s", name, server, err, msg)
	}
	var r struct{ Username, Secret string }
	if err := json.Unmarshal(out, &r); err != nil {
		return "", "", fmt.Errorf("credential helper docker-credential-%s: %w", name, err)
	}
	if r.Username == "<token>" {
		return "", r.Secret, nil
	}
	return r.Username, r.Secret, nil
}
