/*-------------------------------------------------------------------------
 *
 * slack.c
 *		Slack interactivity: POST /slack/actions.
 *
 * Not served yet: the HTTP worker answers 501.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "pg_herald.h"
#include "http_server.h"

void
herald_slack_actions(const HeraldHttpRequest *req, HeraldHttpResponse *resp)
{
	resp->status = 501;
	resp->content_type = "text/plain; charset=utf-8";
	appendStringInfoString(&resp->body, "not yet\n");
}
