/*
 * AWS credentials, found the way the AWS SDKs look for them. This file
 * covers the sources that are plain reads: the environment
 * (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) and the
 * shared credentials and config files with a profile. Web identity (STS)
 * and EC2 instance metadata (IMDSv2) are asynchronous, and the chain that
 * tries all four in order is credchain.h's. Secrets are wiped when freed
 * and never logged.
 */
#ifndef CK_CREDS_H
#define CK_CREDS_H

#include <stdint.h>

struct aws_creds {
	char	*access_key_id;
	char	*secret_access_key;
	char	*session_token;		/* NULL when none */
	int64_t	 expiration;		/* UTC seconds; 0: does not expire */
	char	*source;		/* "environment", "profile NAME", ... */
};

/*
 * 0 and creds filled, -ENOENT when the variables are not set, -EINVAL with
 * *cause when only half of them are (a mistake worth telling).
 */
int	 creds_from_env(struct aws_creds *, char **cause);
/*
 * The profile (NULL: AWS_PROFILE, else "default") from the credentials
 * file, then the config file ("[profile NAME]", "[default]"). NULL paths
 * mean AWS_SHARED_CREDENTIALS_FILE / AWS_CONFIG_FILE, else ~/.aws/...
 * 0, -ENOENT when the profile has no keys, -EINVAL with *cause.
 */
int	 creds_from_profile(const char *profile, const char *creds_file,
	    const char *config_file, struct aws_creds *, char **cause);
/* Wipes the secrets and frees; accepts a zeroed or half-built struct. */
void	 creds_free(struct aws_creds *);

#endif
