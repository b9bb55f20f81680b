/*
 * Fuzz the ElastiCache and STS XML answers: the same bytes go through
 * every ecxml_parse_* (an endpoint can answer anything to any request).
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>

#include "ecxml.h"
#include "fuzz.h"

/* libxml2 would print to stderr on some errors despite NOERROR. */
static void
quiet(void *ctx, const char *fmt, ...)
{
	(void)ctx;
	(void)fmt;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char		*xml = (const char *)data;
	struct ec_error		 err;
	struct ec_rg_page	 rgs;
	struct ec_rg		 rg;
	struct ec_cc_page	 ccs;
	struct ec_event_page	 evs;
	struct ec_sts_creds	 sts;
	struct kvlist		 tags = { 0 };
	char			*cause;
	static int		 inited;

	if (!inited) {
		xmlSetGenericErrorFunc(NULL, quiet);
		inited = 1;
	}
	if (ecxml_parse_error(xml, size, &err) == 1 && err.code == NULL)
		abort();
	ec_error_free(&err);

	cause = NULL;
	if (ecxml_parse_describe_rgs(xml, size, &rgs, &cause) != 0 &&
	    cause == NULL)
		abort();
	ec_rg_page_free(&rgs);
	free(cause);

	cause = NULL;
	if (ecxml_parse_rg_result(xml, size, &rg, &cause) != 0 &&
	    cause == NULL)
		abort();
	ec_rg_free(&rg);
	free(cause);

	cause = NULL;
	if (ecxml_parse_describe_ccs(xml, size, &ccs, &cause) != 0 &&
	    cause == NULL)
		abort();
	ec_cc_page_free(&ccs);
	free(cause);

	cause = NULL;
	if (ecxml_parse_describe_events(xml, size, &evs, &cause) != 0 &&
	    cause == NULL)
		abort();
	ec_event_page_free(&evs);
	free(cause);

	cause = NULL;
	if (ecxml_parse_sts_creds(xml, size, &sts, &cause) != 0 &&
	    cause == NULL)
		abort();
	ec_sts_creds_free(&sts);
	free(cause);

	cause = NULL;
	if (ecxml_parse_tags(xml, size, &tags, &cause) != 0 && cause == NULL)
		abort();
	kvlist_free(&tags);
	free(cause);
	return 0;
}
