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

/* A 1.0 installation: no owners ($6 and $7 unused). */
static PresenceQuery register_query = {
	"INSERT INTO %1$s.tep_presence_worker AS w (" REGISTER_COLUMNS ")"
	" VALUES (" REGISTER_VALUES ")" REGISTER_AGAIN " RETURNING true",
	7, {TEXTOID, INT8OID, INT4OID, TIMESTAMPTZOID, INTERVALOID, OIDOID, INT8OID}
};

/*
 * Registering makes the caller ($6) the owner of a new worker.  An existing
 * one is registered again only if the caller has its owner's privileges
 * (the owner is kept: a member restarting its role's gateway), it has no
 * owner, or it is dead (the caller takes it over); else no row comes back.
 * Decided on the row as it is at the conflict, which it locks, so two
 * roles starting one id at once cannot both get it.
 */
static PresenceQuery register_owned_query = {
	"INSERT INTO %1$s.tep_presence_worker AS w (" REGISTER_COLUMNS ", owner)"
	" VALUES (" REGISTER_VALUES ", $6)" REGISTER_AGAIN ","
	" owner = CASE WHEN " CALLER_HAS_OWNER("w") " THEN w.owner"
	" ELSE excluded.owner END"
	" WHERE w.owner IS NULL OR " CALLER_HAS_OWNER("w")
	" OR NOT (" WORKER_ALIVE("w") ")"
	" RETURNING true",
	7, {TEXTOID, INT8OID, INT4OID, TIMESTAMPTZOID, INTERVALOID, OIDOID, INT8OID}
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
static PresenceQuery unregister_dead_query = {
	"DELETE FROM %1$s.tep_presence_worker AS w"
	" USING (SELECT worker_id FROM %1$s.tep_presence_worker AS d"
	"        WHERE worker_id" EQ "$1"
	"        AND (lease_until" LT "pg_catalog.clock_timestamp()"
	"        OR (backend_pid IS NULL AND lease IS NULL AND last_seen_ts" LT "$2)"
	"        OR (backend_pid IS NOT NULL AND NOT " BACKEND_ALIVE("d") "))"
	SKIP_LOCKED ") AS dead"
	" WHERE w.worker_id" EQ "dead.worker_id",
	2, {TEXTOID, INT8OID}
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

/*
 * Whether the worker has a row, and its owner (InvalidOid: none), read
 * straight from the primary key with `snapshot`.
 */
static bool
find_worker(const char *worker_id, Snapshot snapshot, Oid *owner)
{
	Relation	rel = table_open(presence_table(PRESENCE_WORKERS),
								 AccessShareLock);
	Relation	index = index_open(presence_primary_key_index(rel),
								   AccessShareLock);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	AttrNumber	owner_attnum = presence_worker_owner_attnum();
	bool		found;

	*owner = InvalidOid;
	found = presence_find_by_key(rel, index, worker_id, snapshot, slot);
	if (found && owner_attnum != InvalidAttrNumber)
	{
		bool		isnull;
		Datum		value = slot_getattr(slot, owner_attnum, &isnull);

		if (!isnull)
			*owner = DatumGetObjectId(value);
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
 * as committed now (committed_now).  One probe of the primary key, which track needs anyway (registering in its statement
 * would cost a whole ModifyTable node each time), so the check adds no
 * query.  Entries without a worker row have no owner to check.
 */
bool
presence_use_worker(const char *worker_id)
{
	Oid			owner;
	bool		found;

	presence_check_connection_id(worker_id);
	found = find_worker(worker_id, committed_now(), &owner);
	presence_check_worker_owner(worker_id, owner);
	return found;
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
 * the caller.  False when it exists, is alive and belongs to a role whose
 * privileges the caller lacks (register_owned_query).
 */
static bool
register_worker(const char *worker_id, Interval *lease)
{
	Datum		values[7];
	char		nulls[7];		/* SPI's ' ' / 'n' flags, not a string */

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
	presence_execute(presence_worker_owner_attnum() != InvalidAttrNumber ?
					 &register_owned_query : &register_query,
					 values, nulls, false, 0);
	return SPI_processed > 0;
}

/*
 * The error of a refused registration: the worker is alive and its owner's
 * privileges are not the caller's.  The row, locked by the refusal, is read
 * as committed for the owner's name.
 */
static void
refuse_registration(const char *worker_id)
{
	Oid			owner;

	(void) find_worker(worker_id, GetLatestSnapshot(), &owner);
	presence_check_worker_owner(worker_id, owner);
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
 * presence_worker_start(worker_id, lease): registers the id (refused for a
 * live worker of another role), drops what it already had (a restarted
 * process reusing it) and makes it the session's worker.  Registering
 * first locks the worker row, so a concurrent start of the same id waits.
 */
PRESENCE_FUNCTION(presence_worker_start, true)
{
	char	   *worker_id;
	Interval   *lease = NULL;

	if (PG_ARGISNULL(0))
		worker_id = pstrdup(presence_connection_worker());
	else
		worker_id = presence_text_arg(fcinfo, 0, "worker_id", false,
									  PRESENCE_MAX_NAME_BYTES);
	presence_check_connection_id(worker_id);
	if (!PG_ARGISNULL(1))
		lease = lease_arg(PG_GETARG_INTERVAL_P(1));

	presence_spi_connect();
	if (!register_worker(worker_id, lease))
		refuse_registration(worker_id);
	presence_leaving_because(PRESENCE_LEFT_WORKER_RESTART);
	presence_drop_entries(worker_id, -1);
	SPI_finish();

	set_session_worker(worker_id);
	PG_RETURN_TEXT_P(cstring_to_text(worker_id));
}

/*
 * presence_heartbeat(worker_id): refreshes last_seen_ts (and the lease).
 * Returns false when the worker had already lapsed: its entries may have
 * been pruned.  An unknown worker is an error, except the connection's
 * own, which is registered; another role's worker is 42501.
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
		if (!register_worker(worker_id, NULL))
			refuse_registration(worker_id);
	}
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("worker_id \"%s\" is not registered", worker_id),
				 errhint("Call presence_worker_start() to register it again.")));
	SPI_finish();
	PG_RETURN_BOOL(was_alive);
}

/*
 * presence_worker_stop(worker_id): drops the worker's entries (leave diffs)
 * and its row; returns the entries dropped.  Another role's worker is
 * 42501.
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
				Datum		values[2];

				values[0] = ids[foreach_current_index(lc)];
				values[1] = ttl_cutoff;
				presence_execute(&unregister_dead_query, values, NULL, false, 0);
			}
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
