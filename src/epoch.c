/*
 * epoch.c
 *		The stream's epoch: a name for one unbroken history of a database's
 *		seqs, carried by every diff and snapshot.
 *
 * A listener that resumes from the last seq it saw is right only if the
 * server's history still contains what it saw.  A crash, or promoting an
 * asynchronous standby, can lose commits whose diffs were already
 * delivered (with synchronous_commit = off, or before they reached the
 * standby), and the server then hands out the same seqs again for other
 * diffs; DROP and CREATE EXTENSION start the seqs over.  Each of these
 * changes the epoch: it is a hash of the system identifier, the server
 * run (new at every start and, when preloaded, every crash restart), the
 * timeline (new at every promotion and point-in-time recovery) and the
 * extension's oid.  A client seeing another epoch takes a new snapshot.
 */
#include "presence.h"

#include "access/xlog.h"
#include "access/xlogrecovery.h"
#include "common/hashfn.h"

typedef struct EpochSource
{
	uint64		system_identifier;
	uint64		server_run;
	TimeLineID	timeline;
	Oid			extension;
} EpochSource;

static EpochSource epoch_source;
static char epoch_text[PRESENCE_EPOCH_CHARS + 1];

/*
 * The timeline this server writes on; a standby's, the one it replays.
 */
static TimeLineID
current_timeline(void)
{
	TimeLineID	timeline;

	if (!RecoveryInProgress())
		return GetWALInsertionTimeLine();
	(void) GetXLogReplayRecPtr(&timeline);
	return timeline;
}

/*
 * The current epoch, as PRESENCE_EPOCH_CHARS hex digits.  Recomputed only
 * when one of its sources changed since this backend last asked.
 */
const char *
presence_current_epoch(void)
{
	EpochSource now;
	uint64		hash;

	memset(&now, 0, sizeof(now));	/* the padding is hashed too */
	now.system_identifier = GetSystemIdentifier();
	now.server_run = presence_server_run();
	now.timeline = current_timeline();
	now.extension = presence_extension_oid();
	if (epoch_text[0] != '\0' && memcmp(&now, &epoch_source, sizeof(now)) == 0)
		return epoch_text;

	hash = hash_bytes_extended((const unsigned char *) &now, sizeof(now), 0);
	snprintf(epoch_text, sizeof(epoch_text), "%08x%08x",
			 (uint32) (hash >> 32), (uint32) hash);
	epoch_source = now;
	return epoch_text;
}
