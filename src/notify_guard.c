/*
 * notify_guard.c
 *		The background worker's watch on the NOTIFY queue.
 *
 * A LISTEN session that stops reading its connection (its backend blocks
 * writing to the client) holds the queue's tail: the queue then grows with
 * every diff of the cluster until it is full and every notifying commit
 * fails.  Each tick the worker reads the queue's usage; past
 * presence.notify_queue_warning it logs one WARNING per crossing, naming
 * the sessions that may hold the tail and why, and with
 * presence.stalled_listener_timeout it terminates a session that it knows
 * is a listener holding the tail: one that ran LISTEN (every backend of a
 * preloaded server notes that here, in shared memory) and has been idle
 * and blocked writing to its client that long (an idle session writes
 * nothing but notifications).  Other candidates (a listener in an open
 * transaction or in a long statement, which reads no notification until
 * it ends) are named with the reason, never terminated; a session that
 * never listened (say, a slow client of a large result) is neither.
 */
#include "presence.h"

#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#define MAX_SUSPECTS 5

/*
 * The sessions that ran LISTEN: one slot per backend, its pid, claimed at
 * its first LISTEN and freed at UNLISTEN *, DISCARD ALL or exit.  (A LISTEN
 * rolled back leaves the mark: the guard may name such a session, but
 * terminates it only when it also behaves as a stalled listener.)
 */
static pg_atomic_uint32 *listeners = NULL;
static int	nlisteners = 0;
static int	my_slot = -1;
static ProcessUtility_hook_type prev_process_utility = NULL;

Size
presence_listeners_shmem_size(void)
{
	return mul_size(MaxBackends, sizeof(pg_atomic_uint32));
}

void
presence_listeners_shmem_init(void)
{
	bool		found;

	nlisteners = MaxBackends;
	listeners = ShmemInitStruct("presence listeners",
								presence_listeners_shmem_size(), &found);
	if (!found)
		for (int i = 0; i < nlisteners; i++)
			pg_atomic_init_u32(&listeners[i], 0);
}

static void
forget_listener(int code, Datum arg)
{
	if (my_slot >= 0)
		pg_atomic_write_u32(&listeners[my_slot], 0);
	my_slot = -1;
}

static void
note_listener(void)
{
	static bool exit_hooked = false;

	if (listeners == NULL || my_slot >= 0)
		return;
	for (int i = 0; i < nlisteners; i++)
	{
		uint32		free_slot = 0;

		if (pg_atomic_compare_exchange_u32(&listeners[i], &free_slot,
										   (uint32) MyProcPid))
		{
			my_slot = i;
			break;
		}
	}
	if (!exit_hooked)
	{
		on_shmem_exit(forget_listener, (Datum) 0);
		exit_hooked = true;
	}
}

static bool
is_listener(int pid)
{
	for (int i = 0; listeners != NULL && i < nlisteners; i++)
		if (pg_atomic_read_u32(&listeners[i]) == (uint32) pid)
			return true;
	return false;
}

static void
presence_process_utility(PlannedStmt *pstmt, const char *queryString,
						 bool readOnlyTree, ProcessUtilityContext context,
						 ParamListInfo params, QueryEnvironment *queryEnv,
						 DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *stmt = pstmt->utilityStmt;

	if (IsA(stmt, ListenStmt))
		note_listener();
	else if ((IsA(stmt, UnlistenStmt) && ((UnlistenStmt *) stmt)->conditionname == NULL) ||
			 (IsA(stmt, DiscardStmt) && ((DiscardStmt *) stmt)->target == DISCARD_ALL))
		forget_listener(0, (Datum) 0);
	if (prev_process_utility)
		prev_process_utility(pstmt, queryString, readOnlyTree, context,
							 params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
}

/* Every backend of a preloaded server notes its LISTENs. */
void
presence_watch_listens(void)
{
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = presence_process_utility;
}

/*
 * Client sessions that may hold the tail, read only when the queue is
 * above the mark: blocked writing to their client first, then in a
 * transaction or a statement, longest first (an idle session not writing
 * to its client reads its notifications).  Which of them listen is known
 * only here, in C (is_listener).
 */
static PresenceQuery suspects_query = {
	"SELECT pg_catalog.pg_notification_queue_usage(), a.pid, a.backend_start,"
	" a.state" EQ "'idle' AND a.wait_event IS NOT DISTINCT FROM 'ClientWrite',"
	" coalesce(a.application_name, ''),"
	" coalesce(pg_catalog.date_part('epoch', pg_catalog.now() OPERATOR(pg_catalog.-)"
	"   coalesce(a.xact_start, a.state_change))::int, 0),"
	" coalesce(a.state, ''), coalesce(a.wait_event, '')"
	" FROM (SELECT 1) AS one LEFT JOIN pg_catalog.pg_stat_activity AS a"
	" ON a.backend_type" EQ "'client backend'"
	" AND a.pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid()"
	" AND (a.state OPERATOR(pg_catalog.<>) 'idle'"
	"      OR a.wait_event IS NOT DISTINCT FROM 'ClientWrite')"
	" ORDER BY a.wait_event IS NOT DISTINCT FROM 'ClientWrite' DESC,"
	" a.xact_start IS NULL, coalesce(a.xact_start, a.state_change)",
	0, {InvalidOid}
};

static PresenceQuery usage_query = {
	"SELECT pg_catalog.pg_notification_queue_usage()", 0, {InvalidOid}
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
			(errmsg("presence: terminated session %d, a listener blocked writing notifications to its client for %ld ms while the NOTIFY queue was %.4f%% full",
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
	int			nnamed = 0;
	StringInfoData suspects;
	double		usage;
	bool		isnull;

	presence_execute(&usage_query, NULL, NULL, true, 0);
	usage = DatumGetFloat8(SPI_getbinval(SPI_tuptable->vals[0],
										 SPI_tuptable->tupdesc, 1, &isnull));
	if (usage < presence_notify_queue_warning)
	{
		warned = false;
		nstalled = 0;
		return;
	}
	presence_execute(&suspects_query, NULL, NULL, true, 0);

	initStringInfo(&suspects);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	row = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		int			pid = DatumGetInt32(SPI_getbinval(row, desc, 2, &isnull));
		bool		stalled_listener;

		if (isnull)
			break;				/* no session at all */
		if (!is_listener(pid))
			continue;			/* reads no notification: holds no tail */
		if (nnamed++ == MAX_SUSPECTS)
			break;
		stalled_listener = DatumGetBool(SPI_getbinval(row, desc, 4, &isnull));
		if (stalled_listener)
		{
			StalledSession *s = &seen[nseen++];

			s->pid = pid;
			s->backend_start = DatumGetTimestampTz(SPI_getbinval(row, desc, 3,
																 &isnull));
			s->blocked_since = blocked_since(pid, s->backend_start, now);
			appendStringInfo(&suspects,
							 "%spid %d (application \"%s\"): a listener blocked writing notifications to its client for at least %ld ms",
							 nnamed > 1 ? "; " : "", pid, SPI_getvalue(row, desc, 5),
							 (long) ((now - s->blocked_since) / 1000));
		}
		else
			appendStringInfo(&suspects,
							 "%spid %d (application \"%s\"): a listener %s (wait event \"%s\") for %d s, which reads no notification until its transaction ends",
							 nnamed > 1 ? "; " : "", pid, SPI_getvalue(row, desc, 5),
							 SPI_getvalue(row, desc, 7), SPI_getvalue(row, desc, 8),
							 DatumGetInt32(SPI_getbinval(row, desc, 6, &isnull)));
	}

	if (!warned)
	{
		ereport(WARNING,
				(errmsg("presence: the NOTIFY queue is %.4f%% full (presence.notify_queue_warning is %g%%)",
						usage * 100, presence_notify_queue_warning * 100),
				 errdetail("Listening sessions that may hold its tail: %s.",
						   suspects.len > 0 ? suspects.data : "none found"),
				 errhint("A listener holds the queue until it reads: one that stops reading its connection, or stays in a transaction or a statement.  presence.stalled_listener_timeout ends the first kind only.")));
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
