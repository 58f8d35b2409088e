/*
 * liveness.c
 *		App worker identity and liveness: worker_start, heartbeat,
 *		worker_stop and the pruning of dead workers' entries.
 *
 * A worker is one of three kinds.  Connection-bound: alive while the
 * backend that registered it (pid and start time) runs.  Leased: alive
 * while heartbeats arrive within its lease.  Tep-written heartbeat rows:
 * alive for presence.worker_ttl after last_seen_ts.  Entries whose worker
 * has no row at all are dead too.
 */
#include "presence.h"
#include "compat.h"

#include "access/genam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "executor/tuptable.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

/* The longest lease a worker may take. */
#define PRESENCE_MAX_LEASE "100 years"

/* A bound worker is alive while a backend with its pid and start runs. */
#define BACKEND_ALIVE(w) \
	"EXISTS (SELECT 1 FROM pg_catalog.pg_stat_get_activity(NULL) AS a" \
	" WHERE a.pid" EQ w ".backend_pid" \
	" AND a.backend_start" EQ w ".backend_start)"

/* Alive: its backend runs, its lease has not run out, or ($7) its heartbeat is recent. */
#define WORKER_ALIVE(w) \
	"CASE WHEN " w ".backend_pid IS NOT NULL THEN " BACKEND_ALIVE(w) \
	" WHEN " w ".lease IS NOT NULL THEN " w ".lease_until" GE \
	"pg_catalog.clock_timestamp()" \
	" ELSE " w ".last_seen_ts" GE "$7 END"

/* The caller ($6) has the privileges of the worker's owner. */
#define CALLER_HAS_OWNER(w) \
	"(" w ".owner IS NOT NULL" \
	" AND pg_catalog.pg_has_role($6, " w ".owner, 'USAGE'))"

#define REGISTER_COLUMNS \
	"worker_id, last_seen_ts, backend_pid, backend_start, lease, lease_until"
#define REGISTER_VALUES \
	"$1, $2, $3, $4, $5, pg_catalog.clock_timestamp()" PLUS "$5"
#define REGISTER_AGAIN \
	" ON CONFLICT (worker_id) DO UPDATE SET" \
	" last_seen_ts = excluded.last_seen_ts," \
	" backend_pid = excluded.backend_pid," \
	" backend_start = excluded.backend_start," \
	" lease = excluded.lease, lease_until = excluded.lease_until"

/*
 * Bound to a connection other than this one ($8, $9: this backend's pid
 * and start).
 */
#define BOUND_ELSEWHERE(w) \
	"(" w ".backend_pid IS NOT NULL AND (" w ".backend_pid" NE "$8" \
	" OR " w ".backend_start" NE "$9))"

/*
 * A live worker bound to another connection is registered again only when
 * the caller says it takes it over ($10): two processes started with one id
 * would otherwise take it from each other silently.
 */
#define NOT_TAKEN_FROM(w) \
	"($10 OR NOT " BOUND_ELSEWHERE(w) " OR NOT (" WORKER_ALIVE(w) "))"

#define REGISTER_ARGTYPES \
	{TEXTOID, INT8OID, INT4OID, TIMESTAMPTZOID, INTERVALOID, OIDOID, INT8OID, \
	INT4OID, TIMESTAMPTZOID, BOOLOID}

/* A 1.0 installation: no owners ($6 unused). */
static PresenceQuery register_query = {
	"INSERT INTO %1$s.tep_presence_worker AS w (" REGISTER_COLUMNS ")"
	" VALUES (" REGISTER_VALUES ")" REGISTER_AGAIN
	" WHERE " NOT_TAKEN_FROM("w") " RETURNING true",
	10, REGISTER_ARGTYPES
};

/*
 * Registering makes the caller ($6) the owner of a new worker.  An existing
 * one is registered again only if it is dead (the caller takes it over), or
 * if the caller has its owner's privileges (the owner is kept: a member
 * restarting its role's gateway) or it has no owner, and it is not taken
 * from another live connection against the caller's word; else no row
 * comes back.  Decided on the row as it is at the conflict, which it
 * locks, so two sessions starting one id at once cannot both get it.
 */
static PresenceQuery register_owned_query = {
	"INSERT INTO %1$s.tep_presence_worker AS w (" REGISTER_COLUMNS ", owner)"
	" VALUES (" REGISTER_VALUES ", $6)" REGISTER_AGAIN ","
	" owner = CASE WHEN " CALLER_HAS_OWNER("w") " THEN w.owner"
	" ELSE excluded.owner END"
	" WHERE NOT (" WORKER_ALIVE("w") ")"
	" OR ((w.owner IS NULL OR " CALLER_HAS_OWNER("w") ")"
	" AND " NOT_TAKEN_FROM("w") ")"
	" RETURNING true",
	10, REGISTER_ARGTYPES
};

/*
 * Returns whether the worker was still alive before this heartbeat, and its
 * owner (checked after: an error undoes the update).
 */
#define HEARTBEAT(owner) \
	"UPDATE %1$s.tep_presence_worker AS w" \
	" SET last_seen_ts = $2, lease_until = pg_catalog.clock_timestamp()" PLUS "w.lease" \
	" FROM (SELECT lease_until, last_seen_ts FROM %1$s.tep_presence_worker" \
	"       WHERE worker_id" EQ "$1) AS before" \
	" WHERE w.worker_id" EQ "$1" \
	" RETURNING CASE WHEN w.backend_pid IS NOT NULL THEN true" \
	" WHEN w.lease IS NOT NULL THEN before.lease_until" GE \
	"pg_catalog.clock_timestamp()" \
	" ELSE before.last_seen_ts" GE "$3 END, " owner

static PresenceQuery heartbeat_query = {
	HEARTBEAT("w.owner::pg_catalog.oid"), 3, {TEXTOID, INT8OID, INT8OID}
};

/* A 1.0 installation: no owners. */
static PresenceQuery heartbeat_unowned_query = {
	HEARTBEAT("0::pg_catalog.oid"), 3, {TEXTOID, INT8OID, INT8OID}
};

static PresenceQuery unregister_query = {
	"DELETE FROM %1$s.tep_presence_worker WHERE worker_id" EQ "$1",
	1, {TEXTOID}
};

static PresenceQuery dead_leased_query = {
	"SELECT worker_id FROM %1$s.tep_presence_worker"
	" WHERE lease_until" LT "pg_catalog.clock_timestamp()",
	0, {InvalidOid}
};

static PresenceQuery dead_heartbeat_query = {
	"SELECT worker_id FROM %1$s.tep_presence_worker"
	" WHERE backend_pid IS NULL AND lease IS NULL AND last_seen_ts" LT "$1",
	1, {INT8OID}
};

static PresenceQuery dead_bound_query = {
	"SELECT worker_id FROM %1$s.tep_presence_worker AS w"
	" WHERE backend_pid IS NOT NULL"
	" AND NOT " BACKEND_ALIVE("w"),
	0, {InvalidOid}
};

/*
 * Worker ids that have entries but no worker row.  A skip scan over the
 * (worker_id, fd) index: one probe per distinct worker, never a table scan.
 */
static PresenceQuery orphan_workers_query = {
	"WITH RECURSIVE ids(worker_id) AS ("
	" (SELECT worker_id FROM %1$s.tep_presence ORDER BY worker_id LIMIT 1)"
	" UNION ALL"
	" SELECT (SELECT p.worker_id FROM %1$s.tep_presence AS p"
	"         WHERE p.worker_id" GT "ids.worker_id"
	"         ORDER BY p.worker_id LIMIT 1)"
	" FROM ids WHERE ids.worker_id IS NOT NULL)"
	" SELECT worker_id FROM ids WHERE worker_id IS NOT NULL"
	" AND NOT EXISTS (SELECT 1 FROM %1$s.tep_presence_worker AS w"
	"                 WHERE w.worker_id" EQ "ids.worker_id)",
	0, {InvalidOid}
};

/*
 * Entries of the dead workers $1, worker by worker in index order, so that
 * each batch reads only what it takes, however large the table.
 */
#define DEAD_ENTRIES(lock) \
	"SELECT c.ctid FROM pg_catalog.unnest($1) AS w(worker_id)," \
	" LATERAL (SELECT ctid FROM %1$s.tep_presence AS p" \
	"          WHERE p.worker_id" EQ "w.worker_id" \
	"          ORDER BY p.fd LIMIT $2" lock ") AS c" \
	" LIMIT $2"

static PresenceQuery dead_entries_query = {
	DEAD_ENTRIES(""), 2, {TEXTARRAYOID, INT8OID}
};

static PresenceQuery dead_unlocked_entries_query = {
	DEAD_ENTRIES(SKIP_LOCKED), 2, {TEXTARRAYOID, INT8OID}
};

static PresenceQuery drop_dead_entries_query = {
	"DELETE FROM %1$s.tep_presence"
	" WHERE ctid" EQ "ANY ($1) AND worker_id" EQ "ANY ($2)"
	" RETURNING " PRESENCE_ENTRY_COLUMNS,
	2, {TIDARRAYOID, TEXTARRAYOID},
	BATCH_PLAN
};

/*
 * Deletes the worker row only if it is still dead, and not while an open
 * transaction holds it (a heartbeat in flight): that waits for a later
 * tick.
 */
#define UNREGISTER_DEAD \
	"DELETE FROM %1$s.tep_presence_worker AS w" \
	" USING (SELECT worker_id FROM %1$s.tep_presence_worker AS d" \
	"        WHERE worker_id" EQ "$1" \
	"        AND (lease_until" LT "pg_catalog.clock_timestamp()" \
	"        OR (backend_pid IS NULL AND lease IS NULL AND last_seen_ts" LT "$2)" \
	"        OR (backend_pid IS NOT NULL AND NOT " BACKEND_ALIVE("d") "))" \
	SKIP_LOCKED ") AS dead" \
	" WHERE w.worker_id" EQ "dead.worker_id"

/* A 1.0 installation: no presence_ended_worker ($3 unused). */
static PresenceQuery unregister_dead_query = {
	UNREGISTER_DEAD, 3, {TEXTOID, INT8OID, INT8OID}
};

/*
 * The same, remembering a named connection-bound worker whose connection
 * ended ($3: now), so that its id is not registered again by a later call
 * from another connection (presence_refuse_ended_worker).  Connection ids
 * (pg-<pid>-<start>) are left out: no other connection may use them.
 */
static PresenceQuery unregister_dead_remembering_query = {
	"WITH gone AS (" UNREGISTER_DEAD " RETURNING w.worker_id, w.backend_pid)"
	" INSERT INTO %1$s.presence_ended_worker AS e"
	" (worker_id, backend_pid, ended_ts)"
	" SELECT worker_id, backend_pid, $3 FROM gone"
	" WHERE backend_pid IS NOT NULL"
	" AND worker_id OPERATOR(pg_catalog.!~) '^pg-[0-9]+-[0-9]+$'"
	" ON CONFLICT (worker_id) DO UPDATE"
	" SET backend_pid = excluded.backend_pid, ended_ts = excluded.ended_ts",
	3, {TEXTOID, INT8OID, INT8OID}
};

/* Ended registrations are remembered this long (a day). */
#define ENDED_WORKER_RETENTION_S (24 * 60 * 60)

/* Skipping a row an open transaction holds (a start of that id). */
static PresenceQuery forget_ended_query = {
	"DELETE FROM %1$s.presence_ended_worker AS e"
	" USING (SELECT worker_id FROM %1$s.presence_ended_worker"
	"        WHERE ended_ts" LT "$1" SKIP_LOCKED ") AS old"
	" WHERE e.worker_id" EQ "old.worker_id",
	1, {INT8OID}
};

static PresenceQuery ended_worker_query = {
	"SELECT backend_pid, ended_ts FROM %1$s.presence_ended_worker"
	" WHERE worker_id" EQ "$1",
	1, {TEXTOID}
};

/* presence_worker_start and presence_worker_stop: the id's end is past. */
static PresenceQuery forget_ended_worker_query = {
	"DELETE FROM %1$s.presence_ended_worker WHERE worker_id" EQ "$1"
	" RETURNING true",
	1, {TEXTOID}
};

/*
 * Keeps live bound workers' last_seen_ts fresh, so that a Tep app pruning
 * by age never removes them.  Reads only the rows that are due, and skips
 * a row an open transaction holds.
 */
static PresenceQuery touch_bound_query = {
	"UPDATE %1$s.tep_presence_worker AS w SET last_seen_ts = $1"
	" FROM (SELECT worker_id FROM %1$s.tep_presence_worker AS d"
	"       WHERE backend_pid IS NOT NULL AND last_seen_ts" LT "$2"
	"       AND " BACKEND_ALIVE("d") SKIP_LOCKED ") AS due"
	" WHERE w.worker_id" EQ "due.worker_id",
	2, {INT8OID, INT8OID}
};

/* tep_presence_worker.backend_pid, as 1.0 created the table. */
#define WORKER_ATTNUM_BACKEND_PID 3

/*
 * Whether the worker has a row, its owner (InvalidOid: none) and the pid of
 * the backend it is bound to (0: none), read straight from the primary key
 * with `snapshot`.
 */
static bool
find_worker(const char *worker_id, Snapshot snapshot, Oid *owner,
			int32 *backend_pid)
{
	Relation	rel = table_open(presence_table(PRESENCE_WORKERS),
								 AccessShareLock);
	Relation	index = index_open(presence_primary_key_index(rel),
								   AccessShareLock);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	AttrNumber	owner_attnum = presence_worker_owner_attnum();
	bool		found;
	bool		isnull;
	Datum		value;

	*owner = InvalidOid;
	*backend_pid = 0;
	found = presence_find_by_key(rel, index, worker_id, snapshot, slot);
	if (found && owner_attnum != InvalidAttrNumber)
	{
		value = slot_getattr(slot, owner_attnum, &isnull);
		if (!isnull)
			*owner = DatumGetObjectId(value);
	}
	if (found)
	{
		value = slot_getattr(slot, WORKER_ATTNUM_BACKEND_PID, &isnull);
		if (!isnull)
			*backend_pid = DatumGetInt32(value);
	}
	ExecDropSingleTupleTableSlot(slot);
	index_close(index, AccessShareLock);
	table_close(rel, AccessShareLock);
	return found;
}

/*
 * A snapshot of what is committed now, for reading a worker's owner: the
 * statement's at READ COMMITTED, a new one where the transaction keeps
 * its first (REPEATABLE READ, SERIALIZABLE), so that a role that owned a
 * worker when such a transaction began cannot act on it after another
 * role took it over.
 */
static Snapshot
committed_now(void)
{
	return IsolationUsesXactSnapshot() ? GetLatestSnapshot() :
		GetActiveSnapshot();
}

/*
 * Before a change names a worker: ERROR 42501 unless the caller may act on
 * it (another connection's id, or an owner whose privileges the caller
 * lacks).  Returns whether the worker is registered.  The owner is read
 * as committed now (committed_now).  One probe of the primary key, which
 * track needs anyway (registering in its statement would cost a whole ModifyTable node each time), so the check adds no
 * query.  Entries without a worker row have no owner to check.
 */
bool
presence_use_worker(const char *worker_id)
{
	Oid			owner;
	int32		backend_pid;
	bool		found;

	presence_check_connection_id(worker_id);
	found = find_worker(worker_id, committed_now(), &owner, &backend_pid);
	presence_check_worker_owner(worker_id, owner);
	return found;
}

/* Whether the installation remembers ended registrations (1.1). */
static bool
remembers_ended_workers(void)
{
	return OidIsValid(presence_table(PRESENCE_ENDED_WORKERS));
}

/*
 * For a call that would register an unknown worker id, or change its
 * entries: ERROR 55000 when the id was bound to a connection that ended
 * (the prune removed its entries and its row).  Registering it again as a
 * heartbeat worker would tie its new entries to nothing the gateway owns,
 * and the gateway would never learn that its dedicated connection is gone.
 * Runs in the caller's SPI connection.
 */
void
presence_refuse_ended_worker(const char *worker_id)
{
	Datum		id = CStringGetTextDatum(worker_id);
	bool		isnull;
	int32		backend_pid;
	int64		ended_ts;

	if (!remembers_ended_workers())
		return;
	presence_execute(&ended_worker_query, &id, NULL, true, 1);
	if (SPI_processed == 0)
		return;
	backend_pid = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
											  SPI_tuptable->tupdesc, 1,
											  &isnull));
	ended_ts = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										   SPI_tuptable->tupdesc, 2, &isnull));
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("worker_id \"%s\" is no longer registered: its connection ended",
					worker_id),
			 errdetail("It was bound to the connection of backend pid %d, which ended; its entries were removed at %s.",
					   backend_pid,
					   timestamptz_to_str(time_t_to_timestamptz((pg_time_t) ended_ts))),
			 errhint("Call presence_worker_start() again to register it, on a connection that stays open.")));
}

/* Forget that the id's registration ended; whether it had. */
static bool
forget_ended_worker(const char *worker_id)
{
	Datum		id = CStringGetTextDatum(worker_id);

	if (!remembers_ended_workers())
		return false;
	presence_execute(&forget_ended_worker_query, &id, NULL, false, 0);
	return SPI_processed > 0;
}

static int64
clock_epoch_s(void)
{
	return (int64) timestamptz_to_time_t(GetCurrentTimestamp());
}

static void
set_session_worker(const char *worker_id)
{
	(void) set_config_option("presence.worker_id", worker_id, PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SET, true, 0, false);
}

/*
 * Register a worker, bound to this connection when lease is NULL, owned by
 * the caller.  False when it exists, is alive and either belongs to a role
 * whose privileges the caller lacks or is bound to another connection and
 * the caller does not take it over (register_owned_query).
 */
static bool
register_worker(const char *worker_id, Interval *lease, bool takeover)
{
	Datum		values[10];
	char		nulls[10];		/* SPI's ' ' / 'n' flags, not a string */

	memset(nulls, ' ', sizeof(nulls));
	values[0] = CStringGetTextDatum(worker_id);
	values[1] = Int64GetDatum(clock_epoch_s());
	if (lease == NULL)
	{
		values[2] = Int32GetDatum(MyProcPid);
		values[3] = TimestampTzGetDatum(MyStartTimestamp);
		nulls[4] = 'n';
		presence_watch_connection_exit();
	}
	else
	{
		nulls[2] = nulls[3] = 'n';
		values[4] = IntervalPGetDatum(lease);
	}
	values[5] = ObjectIdGetDatum(presence_caller());
	values[6] = Int64GetDatum(clock_epoch_s() - presence_worker_ttl_s);
	values[7] = Int32GetDatum(MyProcPid);
	values[8] = TimestampTzGetDatum(MyStartTimestamp);
	values[9] = BoolGetDatum(takeover);
	presence_execute(presence_worker_owner_attnum() != InvalidAttrNumber ?
					 &register_owned_query : &register_query,
					 values, nulls, false, 0);
	return SPI_processed > 0;
}

/*
 * The error of a refused registration: the worker is alive and its owner's
 * privileges are not the caller's (42501), or it is bound to another
 * connection (55006).  The row, locked by the refusal, is read as
 * committed.
 */
static void
refuse_registration(const char *worker_id)
{
	Oid			owner;
	int32		backend_pid;

	(void) find_worker(worker_id, GetLatestSnapshot(), &owner, &backend_pid);
	presence_check_worker_owner(worker_id, owner);
	if (backend_pid != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("worker_id \"%s\" is in use by the connection of backend pid %d",
						worker_id, backend_pid),
				 errdetail("presence_worker_start() bound it to that connection, which is still open."),
				 errhint("Give each gateway process a worker id of its own.  To take this one over (say, from a lost connection of your own whose backend has not exited yet), pass takeover => true.")));
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied for worker_id \"%s\"", worker_id),
			 errdetail("The worker is alive and belongs to another role.")));
}

/*
 * The lease argument: ERROR 22023 unless it is positive as a whole (so
 * '1 day -1 hour' is fine) and at most PRESENCE_MAX_LEASE, which keeps
 * clock_timestamp() + lease far from the end of timestamps.
 */
static Interval *
lease_arg(Interval *lease)
{
	Interval	zero = {0};
	Interval   *most = DatumGetIntervalP(DirectFunctionCall3(interval_in,
															 CStringGetDatum(PRESENCE_MAX_LEASE),
															 ObjectIdGetDatum(InvalidOid),
															 Int32GetDatum(-1)));

	if (DatumGetInt32(DirectFunctionCall2(interval_cmp, IntervalPGetDatum(lease),
										  IntervalPGetDatum(&zero))) <= 0 ||
		DatumGetInt32(DirectFunctionCall2(interval_cmp, IntervalPGetDatum(lease),
										  IntervalPGetDatum(most))) > 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("lease must be a positive interval of at most %s",
						PRESENCE_MAX_LEASE),
				 errdetail("It is %s.",
						   DatumGetCString(DirectFunctionCall1(interval_out,
															   IntervalPGetDatum(lease))))));
	return lease;
}

/*
 * presence_worker_start(worker_id, lease, takeover): registers the id
 * (refused for a live worker of another role, and for one bound to another
 * live connection unless takeover), drops what it already had (a restarted
 * process reusing it) and makes it the session's worker.  Registering
 * first locks the worker row, so a concurrent start of the same id waits.
 * A 1.0 installation's function has no takeover argument.
 */
PRESENCE_FUNCTION(presence_worker_start, true)
{
	char	   *worker_id;
	Interval   *lease = NULL;
	bool		takeover = false;

	if (PG_ARGISNULL(0))
		worker_id = pstrdup(presence_connection_worker());
	else
		worker_id = presence_text_arg(fcinfo, 0, "worker_id", false,
									  PRESENCE_MAX_NAME_BYTES);
	presence_check_connection_id(worker_id);
	if (!PG_ARGISNULL(1))
		lease = lease_arg(PG_GETARG_INTERVAL_P(1));
	if (PG_NARGS() > 2)
	{
		if (PG_ARGISNULL(2))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("takeover must not be NULL")));
		takeover = PG_GETARG_BOOL(2);
	}

	presence_spi_connect();
	if (!register_worker(worker_id, lease, takeover))
		refuse_registration(worker_id);
	(void) forget_ended_worker(worker_id);
	presence_leaving_because(PRESENCE_LEFT_WORKER_RESTART);
	presence_drop_entries(worker_id, -1);
	SPI_finish();

	set_session_worker(worker_id);
	PG_RETURN_TEXT_P(cstring_to_text(worker_id));
}

/*
 * presence_heartbeat(worker_id): refreshes last_seen_ts (and the lease).
 * Returns false when the worker had already lapsed: its entries may have
 * been pruned.  An unknown worker is an error (55000 when its connection
 * ended), except the connection's own, which is registered; another role's
 * worker is 42501.
 */
PRESENCE_FUNCTION(presence_heartbeat, true)
{
	char	   *worker_id = presence_worker_arg(fcinfo, 0);
	int64		now_s = clock_epoch_s();
	Datum		values[3];
	bool		was_alive = true;

	values[0] = CStringGetTextDatum(worker_id);
	values[1] = Int64GetDatum(now_s);
	values[2] = Int64GetDatum(now_s - presence_worker_ttl_s);

	presence_check_connection_id(worker_id);
	presence_spi_connect();
	presence_execute(presence_worker_owner_attnum() != InvalidAttrNumber ?
					 &heartbeat_query : &heartbeat_unowned_query,
					 values, NULL, false, 0);
	if (SPI_processed > 0)
	{
		HeapTuple	row = SPI_tuptable->vals[0];
		bool		isnull;
		Oid			owner;

		was_alive = DatumGetBool(SPI_getbinval(row, SPI_tuptable->tupdesc, 1,
											   &isnull));
		owner = DatumGetObjectId(SPI_getbinval(row, SPI_tuptable->tupdesc, 2,
											   &isnull));
		presence_check_worker_owner(worker_id, isnull ? InvalidOid : owner);
	}
	else if (presence_is_connection_worker(worker_id))
	{
		if (!register_worker(worker_id, NULL, false))
			refuse_registration(worker_id);
	}
	else
	{
		presence_refuse_ended_worker(worker_id);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("worker_id \"%s\" is not registered", worker_id),
				 errhint("Call presence_worker_start() to register it again.")));
	}
	SPI_finish();
	PG_RETURN_BOOL(was_alive);
}

/*
 * presence_worker_stop(worker_id): drops the worker's entries (leave diffs)
 * and its row, and forgets that its connection ended; returns the entries
 * dropped.  Another role's worker is 42501.
 */
PRESENCE_FUNCTION(presence_worker_stop, true)
{
	char	   *worker_id = presence_worker_arg(fcinfo, 0);
	Datum		id = CStringGetTextDatum(worker_id);
	int			dropped;
	bool		had_row;

	presence_spi_connect();
	(void) presence_use_worker(worker_id);
	presence_leaving_because(PRESENCE_LEFT_WORKER_STOP);
	dropped = presence_drop_entries(worker_id, -1);
	presence_execute(&unregister_query, &id, NULL, false, 0);
	had_row = SPI_processed > 0;
	had_row |= forget_ended_worker(worker_id);
	SPI_finish();

	if (!had_row && dropped == 0 && !PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("worker_id \"%s\" is not registered", worker_id)));

	if (presence_worker_id_guc != NULL &&
		strcmp(presence_worker_id_guc, worker_id) == 0)
		set_session_worker("");
	PG_RETURN_INT32(dropped);
}

/*
 * Append the ids a query returns to a list (copied: SPI reuses the memory).
 */
static List *
collect_ids(List *ids, PresenceQuery *query, Datum *values)
{
	presence_execute(query, values, NULL, false, 0);
	for (uint64 i = 0; i < SPI_processed; i++)
		ids = lappend(ids, SPI_getvalue(SPI_tuptable->vals[i],
										SPI_tuptable->tupdesc, 1));
	SPI_freetuptable(SPI_tuptable);
	return ids;
}

/*
 * Remove up to `limit` entries of dead workers, with leave diffs, and then
 * the rows of the dead workers, whose entries all go through one batch.  Bound workers' backends are checked only when
 * check_bound_backends; skip_locked leaves the entries an open transaction
 * holds for another time.  *more says whether to call again.
 */
int
presence_prune_batch(int limit, bool check_bound_backends, bool skip_locked,
					 bool *more)
{
	int64		now_s = clock_epoch_s();
	Datum		ttl_cutoff = Int64GetDatum(now_s - presence_worker_ttl_s);
	Datum		touch_args[2];
	List	   *dead = NIL;
	int			dropped = 0;
	bool		remembers_ended = remembers_ended_workers();

	*more = false;
	presence_leaving_because(PRESENCE_LEFT_PRUNED);
	dead = collect_ids(dead, &dead_leased_query, NULL);
	dead = collect_ids(dead, &dead_heartbeat_query, &ttl_cutoff);
	if (check_bound_backends)
		dead = collect_ids(dead, &dead_bound_query, NULL);
	dead = collect_ids(dead, &orphan_workers_query, NULL);

	if (dead != NIL)
	{
		Datum	   *ids = palloc(list_length(dead) * sizeof(Datum));
		Datum		id_array;
		ListCell   *lc;

		foreach(lc, dead)
			ids[foreach_current_index(lc)] = CStringGetTextDatum(lfirst(lc));
		id_array = PointerGetDatum(construct_array(ids, list_length(dead),
												   TEXTOID, -1, false,
												   TYPALIGN_INT));
		dropped = presence_change_batch(PRESENCE_DIFF_LEAVE,
										skip_locked ?
										&dead_unlocked_entries_query :
										&dead_entries_query,
										&drop_dead_entries_query, &id_array,
										NULL, 1, limit, more);

		/* Once their entries are gone, the dead workers' rows go too. */
		if (!*more)
			foreach(lc, dead)
			{
				Datum		values[3];

				values[0] = ids[foreach_current_index(lc)];
				values[1] = ttl_cutoff;
				values[2] = Int64GetDatum(now_s);
				presence_execute(remembers_ended ?
								 &unregister_dead_remembering_query :
								 &unregister_dead_query,
								 values, NULL, false, 0);
			}
	}
	if (remembers_ended)
	{
		Datum		forget_before = Int64GetDatum(now_s - ENDED_WORKER_RETENTION_S);

		presence_execute(&forget_ended_query, &forget_before, NULL, false, 0);
	}

	touch_args[0] = Int64GetDatum(now_s);
	touch_args[1] = Int64GetDatum(now_s - presence_worker_ttl_s / 3);
	presence_execute(&touch_bound_query, touch_args, NULL, false, 0);
	return dropped;
}

/*
 * presence_prune_dead_workers(): removes every dead worker's entries.
 */
PRESENCE_FUNCTION(presence_prune_dead_workers, true)
{
	int			total = 0;
	bool		more = true;

	presence_refuse_in_transaction_block("presence_prune_dead_workers");
	presence_spi_connect();
	while (more)
		total += presence_prune_batch(presence_batch_size, true, false, &more);
	SPI_finish();
	PG_RETURN_INT32(total);
}
