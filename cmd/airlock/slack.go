package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/airlock-mcp/airlock/notifiers/slack"
)

// newSlack builds the Slack notifier from the slack section, reading its
// secrets; nil when the config has no slack section.
func newSlack(cfg *Config, log *slog.Logger) (*slack.Notifier, error) {
	s := cfg.Slack
	if s == nil {
		return nil, nil
	}
	botToken, err := readSecret("bot_token_file", s.BotTokenFile, "xoxb-")
	if err != nil {
		return nil, err
	}
	var appToken, secret string
	if s.AppTokenFile != "" {
		if appToken, err = readSecret("app_token_file", s.AppTokenFile, "xapp-"); err != nil {
			return nil, err
		}
	}
	if s.SigningSecretFile != "" {
		if secret, err = readSecret("signing_secret_file", s.SigningSecretFile, ""); err != nil {
			return nil, err
		}
	}
	n, err := slack.New(slack.Config{
		BotToken:      botToken,
		AppToken:      appToken,
		SigningSecret: secret,
		Channel:       s.Channel,
		APIURL:        s.APIURL,
		UIURL:         slackUIURL(cfg),
		Approvers:     slack.Approvers{Users: s.Approvers.Users, Groups: s.Approvers.Groups},
		Identities:    cfg.slackIdentities(),
		Logger:        log.With("notifier", slack.Name),
	})
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return n, nil
}

// readSecret reads a secret from its file. Errors name the key and the
// file, never the secret.
func readSecret(key, path, prefix string) (string, error) {
	v, err := readSecretFile(path)
	switch {
	case err != nil:
		return "", fmt.Errorf("config: slack.%s: %w", key, err)
	case strings.ContainsAny(v, " \t\r\n"):
		return "", fmt.Errorf("config: slack.%s: %s holds more than one line or word; it must hold the secret alone", key, path)
	case prefix != "" && !strings.HasPrefix(v, prefix):
		return "", fmt.Errorf("config: slack.%s: the token in %s does not start with %s%s", key, path, prefix, tokenKind(v))
	}
	return v, nil
}

// tokenKind names a Slack token by its prefix, which is not secret: a
// bot token in the app token's file is a common mistake.
func tokenKind(v string) string {
	for prefix, kind := range map[string]string{"xoxb-": "a bot token", "xapp-": "an app-level token", "xoxp-": "a user token"} {
		if strings.HasPrefix(v, prefix) {
			return "; it is " + kind
		}
	}
	return ""
}

// slackUIURL is where Slack messages link to: slack.ui_url, else ui.url
// (where browsers reach Airlock), else the listener's address.
func slackUIURL(cfg *Config) string {
	return cmp.Or(cfg.Slack.UIURL, cfg.UI.URL, defaultUIURL(cfg.Listen))
}

// defaultUIURL is the listener's address, when links to it can work: not
// for a random port (it changes at each start) or an unspecified host.
func defaultUIURL(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil || port == "0" {
		return ""
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		return ""
	}
	return "http://" + listen
}

// startSlack takes decisions from Slack: on /slack/interactivity when a
// signing secret is configured, over Socket Mode when an app token is.
func (rt *runtime) startSlack() {
	if rt.cfg.Slack.SigningSecretFile != "" {
		rt.mux.Handle("/slack/interactivity", rt.slack.InteractivityHandler(rt.broker))
	}
	if rt.cfg.Slack.AppTokenFile == "" {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := rt.slack.RunSocketMode(ctx, rt.broker); err != nil {
			rt.log.Error("slack socket mode failed", "err", err)
		}
	}()
	rt.stopSlack = func() {
		cancel()
		<-done
	}
}

// closeSlack stops taking decisions from Slack and waits for those under
// way; the notifier still updates messages as the broker closes.
func (rt *runtime) closeSlack() {
	if rt.stopSlack != nil {
		rt.stopSlack()
	}
	if rt.slack != nil {
		rt.slack.Close()
	}
}

func newSlackCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "slack",
		Short: "Check Airlock's Slack app",
	}
	var configPath string
	test := &cobra.Command{
		Use:   "test [-c airlock.yaml]",
		Short: "Post a test message and report what the Slack setup is missing",
		Long: `test checks the slack section of the config against Slack: the tokens, the
bot's scopes, the channel (by posting a test message in it), the default
approvers and the user mapping. It prints one line per check and exits 1
when something is missing. See docs/slack.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(configPath)
			if err != nil {
				return err
			}
			if cfg.Slack == nil {
				return errors.New("config: there is no slack section; docs/slack.md shows one")
			}
			n, err := newSlack(cfg, newLogger(cmd.ErrOrStderr(), cfg.LogLevel))
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			failed := 0
			for _, c := range n.SelfTest(ctx) {
				mark := "ok  "
				switch {
				case c.Skipped:
					mark = "skip"
				case !c.OK:
					mark = "FAIL"
					failed++
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s  %s: %s\n", mark, c.Name, c.Detail)
			}
			if failed > 0 {
				return &exitError{code: 1, msg: fmt.Sprintf("%d Slack checks failed; docs/slack.md says how to fix each", failed)}
			}
			return nil
		},
	}
	test.Flags().StringVarP(&configPath, "config", "c", os.Getenv("AIRLOCK_CONFIG"), "config file (env AIRLOCK_CONFIG)")
	cmd.AddCommand(test)
	return cmd
}
