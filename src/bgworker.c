/*
 * bgworker.c
 *		The background worker: every presence.sweep_interval it resets
 *		expired statuses and prunes dead workers, in transactions of at most
 *		presence.batch_size rows, through the same code as the SQL functions.
 *
 * A batch never waits on an application transaction: rows one holds are
 * skipped (SKIP LOCKED) and taken on a later tick.
 */
#include "presence.h"

#include "access/xact.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/lmgr.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/guc.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

/* Safety net: check every bound worker's backend at least this often. */
#define FULL_LIVENESS_CHECK_MS 10000

/* While presence.database does not exist, the launcher looks this often. */
#define DATABASE_RETRY_S 5

/* After the worker exits on an error, the launcher waits this long. */
#define WORKER_RESTART_S 2

/*
 * Register the launcher; called from _PG_init when preloaded.  The worker
 * itself connects to presence.database, which is FATAL when that database
 * does not exist (and the postmaster would start it again every few
 * seconds, each time FATAL).  So a launcher connected to no database
 * waits for it to exist and then starts the worker.
 */
void
presence_register_bgworker(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS |
		BGWORKER_BACKEND_DATABASE_CONNECTION;
	/* Never on a standby: the tables are read-only there. */
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = WORKER_RESTART_S;
	strlcpy(worker.bgw_library_name, "presence", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "presence_launcher_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "presence launcher", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "presence launcher", BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
}

/*
 * The oid of presence.database, InvalidOid while it does not exist: read
 * from the shared catalog by a heap scan, as the autovacuum launcher reads
 * it (a process connected to no database may lack pg_database's indexes
 * in its relcache).
 */
static Oid
database_oid(void)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tuple;
	Oid			oid = InvalidOid;

	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (!OidIsValid(oid) &&
		   (tuple = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tuple);

		if (strcmp(NameStr(db->datname), presence_database) == 0)
			oid = db->oid;
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return oid;
}

/*
 * Whether presence.database exists once no DROP DATABASE of it is under
 * way: DROP DATABASE ... WITH (FORCE) ends the worker while it holds the
 * database's lock, before its own commit, so the lock is waited for.
 */
static bool
database_exists_settled(void)
{
	Oid			oid = database_oid();

	if (!OidIsValid(oid))
		return false;
	StartTransactionCommand();
	LockSharedObject(DatabaseRelationId, oid, 0, AccessShareLock);
	CommitTransactionCommand();
	return OidIsValid(database_oid());
}

/*
 * Sleep on the latch for up to `seconds`; exits when asked to stop.
 */
static void
launcher_sleep(int seconds)
{
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 seconds * 1000L, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
	if (ShutdownRequestPending)
		proc_exit(0);
}

/*
 * Wait until presence.database exists, with one WARNING (not one per
 * look) while it does not.
 */
static void
wait_for_database(void)
{
	bool		warned = false;

	while (!OidIsValid(database_oid()))
	{
		if (!warned)
			ereport(WARNING,
					(errmsg("presence: database \"%s\" (presence.database) does not exist",
							presence_database),
					 errdetail("The presence worker starts once it exists; looking again every %d s.",
							   DATABASE_RETRY_S),
					 errhint("Create the database, or set presence.database and restart the server.")));
		warned = true;
		launcher_sleep(DATABASE_RETRY_S);
	}
}

/*
 * Start the worker as a dynamic background worker that tells this process
 * when it exits; NULL (with a WARNING) when no slot is free.
 */
static BackgroundWorkerHandle *
start_worker(void)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS |
		BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	worker.bgw_notify_pid = MyProcPid;
	strlcpy(worker.bgw_library_name, "presence", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "presence_bgworker_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "presence worker", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "presence worker", BGW_MAXLEN);

	presence_set_worker_stopped(false);
	if (RegisterDynamicBackgroundWorker(&worker, &handle))
		return handle;
	ereport(WARNING,
			(errmsg("presence: could not start the presence worker: no background worker slot is free"),
			 errhint("Raise max_worker_processes; the presence launcher tries again every %d s.",
					 DATABASE_RETRY_S)));
	return NULL;
}

/*
 * Wait for the worker to exit.  If the launcher is asked to stop first, it
 * stops the worker too.
 */
static void
wait_for_worker_exit(BackgroundWorkerHandle *handle)
{
	pid_t		pid;

	while (GetBackgroundWorkerPid(handle, &pid) != BGWH_STOPPED)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_EXIT_ON_PM_DEATH, -1L,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ShutdownRequestPending)
		{
			TerminateBackgroundWorker(handle);
			proc_exit(0);
		}
	}
}

/*
 * The launcher's entry point: connected to no database, it waits for
 * presence.database, starts the worker there and starts it again after it
 * exits on an error (after WORKER_RESTART_S, as the postmaster restarted
 * it before) or because the database went away.  A worker stopped on
 * request (pg_terminate_backend) stays stopped until the server restarts,
 * and so does the launcher.
 */
void
presence_launcher_main(Datum main_arg)
{
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);

	for (;;)
	{
		BackgroundWorkerHandle *handle;

		wait_for_database();
		handle = start_worker();
		if (handle == NULL)
		{
			launcher_sleep(DATABASE_RETRY_S);
			continue;
		}
		wait_for_worker_exit(handle);
		pfree(handle);
		if (presence_worker_stopped() && database_exists_settled())
			proc_exit(0);
		launcher_sleep(WORKER_RESTART_S);
	}
}

/*
 * Start a batch's transaction; false (and no transaction) when the
 * extension is not installed, so the worker idles until it is.
 */
static bool
begin_batch(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (!presence_lock_extension())
	{
		CommitTransactionCommand();
		return false;
	}
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
	presence_spi_connect();
	return true;
}

static void
end_batch(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * One tick: sweep, then prune, then remove idle topics' seq rows (when a
 * walk is on), each batch in its own short transaction, the history's
 * partitions when due, then a look at the NOTIFY queue.
 */
static void
run_tick(bool check_bound_backends)
{
	bool		more = true;

	while (more && !ShutdownRequestPending)
	{
		if (!begin_batch("presence: sweep expired statuses"))
			return;
		presence_sweep_batch(presence_batch_size, true, &more);
		if (!more)
			presence_warn_over_limits();
		end_batch();
	}

	more = true;
	while (more && !ShutdownRequestPending)
	{
		if (!begin_batch("presence: prune dead workers"))
			return;
		presence_prune_batch(presence_batch_size, check_bound_backends, true,
							 &more);
		end_batch();
	}

	more = presence_retention_due();
	while (more && !ShutdownRequestPending)
	{
		if (!begin_batch("presence: remove idle topics"))
			return;
		presence_retention_worker_batch(presence_batch_size, &more);
		end_batch();
	}

	if (!ShutdownRequestPending && presence_history_maintenance_due() &&
		begin_batch("presence: maintain the history"))
	{
		presence_history_maintain_now();
		end_batch();
	}

	if (!ShutdownRequestPending && begin_batch("presence: watch the NOTIFY queue"))
	{
		presence_watch_notify_queue();
		end_batch();
	}
	pgstat_report_stat(false);
}

/*
 * The worker's entry point, started by the launcher.  An ERROR ends the
 * process; the launcher starts it again.  SIGTERM ends it cleanly between
 * batches, and the launcher leaves it stopped.
 */
void
presence_bgworker_main(Datum main_arg)
{
	TimestampTz next_tick;
	TimestampTz last_full_check = 0;
	uint64		seen_exits = 0;
	bool		recheck = true;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnection(presence_database, NULL, 0);

	/*
	 * Tables are schema-qualified in every query; builtins must resolve in
	 * pg_catalog only, as in the SQL functions.  Every query is shaped for
	 * an index, and an idle tick must never scan a table.
	 */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET,
					PGC_S_OVERRIDE);
	SetConfigOption("enable_seqscan", "off", PGC_SUSET, PGC_S_OVERRIDE);

	ereport(LOG,
			(errmsg("presence worker started for database \"%s\"",
					presence_database),
			 errdetail("sweep_interval %d ms, worker_ttl %d s, batch_size %d.",
					   presence_sweep_interval_ms, presence_worker_ttl_s,
					   presence_batch_size)));

	next_tick = GetCurrentTimestamp();
	while (!ShutdownRequestPending)
	{
		TimestampTz now;
		long		wait_ms;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		now = GetCurrentTimestamp();
		if (now >= next_tick)
		{
			uint64		exits = presence_bound_worker_exits();
			bool		check_bound;

			/*
			 * Check bound workers' backends after one exited, and once more
			 * on the next tick: the exiting backend may still have been
			 * listed the first time.
			 */
			check_bound = recheck || exits != seen_exits ||
				TimestampDifferenceExceeds(last_full_check, now,
										   FULL_LIVENESS_CHECK_MS);
			recheck = (exits != seen_exits);
			seen_exits = exits;
			if (check_bound)
				last_full_check = now;

			run_tick(check_bound);

			/* A fixed schedule: ticks do not drift by their own duration. */
			now = GetCurrentTimestamp();
			while (next_tick <= now)
				next_tick = TimestampTzPlusMilliseconds(next_tick,
														presence_sweep_interval_ms);
		}

		wait_ms = (long) ((next_tick - now + 999) / 1000);
		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 wait_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
	presence_set_worker_stopped(true);
	proc_exit(0);
}
