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
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/guc.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

/* Safety net: check every bound worker's backend at least this often. */
#define FULL_LIVENESS_CHECK_MS 10000

/*
 * Register the worker; called from _PG_init when preloaded.
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
	worker.bgw_restart_time = 2;
	strlcpy(worker.bgw_library_name, "presence", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "presence_bgworker_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "presence worker", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "presence worker", BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
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
 * One tick: sweep, then prune, each batch in its own short transaction,
 * the history's partitions when due, then a look at the NOTIFY queue.
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
 * Entry point.  An ERROR ends the process; the postmaster starts it again
 * after bgw_restart_time.  SIGTERM ends it cleanly between batches.
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
	proc_exit(0);
}
