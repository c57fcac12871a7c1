package bot

import "github.com/slack-go/slack"

// WebLinkActionID is the "Open in browser" button: a link, which Slack also
// reports as a press; the bot ignores it.
const WebLinkActionID = "rollout_web"

// withWebLink adds an "Open in browser" button with link to blocks when
// there is a link and room for it under Block Kit's limit.
func withWebLink(blocks []slack.Block, link string) []slack.Block {
	if link == "" || len(blocks) >= maxBlocks {
		return blocks
	}
	btn := slack.NewButtonBlockElement(WebLinkActionID, "web", plain("Open in browser"))
	btn.URL = link
	return append(blocks, slack.NewActionBlock(WebLinkActionID, btn))
}

// webLink is the link to rollout id's web view, or "" when none is configured.
func webLink(link func(int64) string, id int64) string {
	if link == nil || id == 0 {
		return ""
	}
	return link(id)
}
