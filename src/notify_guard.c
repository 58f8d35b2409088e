/*
 * notify_guard.c
 *		The background worker's watch on the NOTIFY queue.
 *
 * A LISTEN session that stops reading its connection (its backend blocks
 * writing to the client) holds the queue's tail: the queue then grows with
 * every diff of the cluster until it is full and every notifying commit
 * fails.  Each tick the worker reads the queue's usage; past
 * presence.notify_queue_warning it logs one WARNING per crossing, naming
 * the sessions most likely holding the tail, and with
 * presence.stalled_listener_timeout it terminates a session that has been
 * blocked writing to its client that long while the queue stays above it.
 */
#include "presence.h"

#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#define MAX_SUSPECTS 5

/* Client sessions blocked writing to their client, then idle ones, oldest first. */
static PresenceQuery suspects_query = {
	"SELECT pg_catalog.pg_notification_queue_usage(), a.pid, a.backend_start,"
	" a.wait_event IS NOT DISTINCT FROM 'ClientWrite',"
	" coalesce(a.application_name, ''),"
	" coalesce(pg_catalog.date_part('epoch', pg_catalog.now() OPERATOR(pg_catalog.-) a.state_change)::int, 0)"
	" FROM (SELECT 1) AS one LEFT JOIN pg_catalog.pg_stat_activity AS a"
	" ON a.backend_type" EQ "'client backend'"
	" AND a.pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid()"
	" AND (a.wait_event" EQ "'ClientWrite' OR a.state" EQ "'idle')"
	" ORDER BY a.wait_event IS NOT DISTINCT FROM 'ClientWrite' DESC, a.state_change"
	" LIMIT " CppAsString2(MAX_SUSPECTS),
	0, {InvalidOid}
};

static PresenceQuery terminate_query = {
	"SELECT pg_catalog.pg_terminate_backend($1)"
	" FROM pg_catalog.pg_stat_activity"
	" WHERE pid" EQ "$1 AND backend_start" EQ "$2",
	2, {INT4OID, TIMESTAMPTZOID}
};

/* A session seen blocked on its client while the queue was above the mark. */
typedef struct StalledSession
{
	int			pid;
	TimestampTz backend_start;
	TimestampTz blocked_since;
} StalledSession;

static StalledSession stalled[MAX_SUSPECTS];
static int	nstalled = 0;
static bool warned = false;

/*
 * When a session first seen blocked now was seen so before, that time.
 */
static TimestampTz
blocked_since(int pid, TimestampTz backend_start, TimestampTz now)
{
	for (int i = 0; i < nstalled; i++)
		if (stalled[i].pid == pid && stalled[i].backend_start == backend_start)
			return stalled[i].blocked_since;
	return now;
}

/*
 * Terminate a session that has held the queue past the timeout.
 */
static void
terminate_stalled(const StalledSession *s, double usage, TimestampTz now)
{
	Datum		values[2];

	values[0] = Int32GetDatum(s->pid);
	values[1] = TimestampTzGetDatum(s->backend_start);
	presence_execute(&terminate_query, values, NULL, false, 0);
	ereport(LOG,
			(errmsg("presence: terminated session %d, blocked writing to its client for %ld ms while the NOTIFY queue was %.4f%% full",
					s->pid,
					(long) ((now - s->blocked_since) / 1000), usage * 100),
			 errdetail("presence.stalled_listener_timeout is %d ms.",
					   presence_stalled_listener_timeout_ms)));
}

/*
 * One look at the queue; the caller is connected to SPI in a transaction.
 */
void
presence_watch_notify_queue(void)
{
	TimestampTz now = GetCurrentTimestamp();
	StalledSession seen[MAX_SUSPECTS];
	int			nseen = 0;
	StringInfoData suspects;
	double		usage;
	bool		isnull;

	presence_execute(&suspects_query, NULL, NULL, true, 0);
	usage = DatumGetFloat8(SPI_getbinval(SPI_tuptable->vals[0],
										 SPI_tuptable->tupdesc, 1, &isnull));
	if (usage < presence_notify_queue_warning)
	{
		warned = false;
		nstalled = 0;
		return;
	}

	initStringInfo(&suspects);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	row = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		int			pid = DatumGetInt32(SPI_getbinval(row, desc, 2, &isnull));
		bool		blocked;

		if (isnull)
			break;				/* no session at all */
		blocked = DatumGetBool(SPI_getbinval(row, desc, 4, &isnull));
		if (blocked)
		{
			StalledSession *s = &seen[nseen++];

			s->pid = pid;
			s->backend_start = DatumGetTimestampTz(SPI_getbinval(row, desc, 3,
																 &isnull));
			s->blocked_since = blocked_since(pid, s->backend_start, now);
			appendStringInfo(&suspects,
							 "%spid %d (application \"%s\", blocked writing to its client for at least %ld ms)",
							 i > 0 ? ", " : "", pid, SPI_getvalue(row, desc, 5),
							 (long) ((now - s->blocked_since) / 1000));
		}
		else
			appendStringInfo(&suspects, "%spid %d (application \"%s\", idle for %d s)",
							 i > 0 ? ", " : "", pid, SPI_getvalue(row, desc, 5),
							 DatumGetInt32(SPI_getbinval(row, desc, 6, &isnull)));
	}

	if (!warned)
	{
		ereport(WARNING,
				(errmsg("presence: the NOTIFY queue is %.4f%% full (presence.notify_queue_warning is %g%%)",
						usage * 100, presence_notify_queue_warning * 100),
				 errdetail("The sessions most likely holding its tail: %s.",
						   suspects.len > 0 ? suspects.data : "none found"),
				 errhint("A LISTEN session that stops reading its connection holds the queue until it reads or ends; presence.stalled_listener_timeout ends such sessions.")));
		warned = true;
	}

	memcpy(stalled, seen, nseen * sizeof(StalledSession));
	nstalled = nseen;
	if (presence_stalled_listener_timeout_ms > 0)
		for (int i = 0; i < nstalled; i++)
			if (TimestampDifferenceExceeds(stalled[i].blocked_since, now,
										   presence_stalled_listener_timeout_ms))
				terminate_stalled(&stalled[i], usage, now);
	pfree(suspects.data);
}
