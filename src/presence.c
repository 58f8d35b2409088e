/*
 * presence.c
 *		Module initialization: GUCs, the change engine's transaction
 *		callbacks, the shared exit counter and the background worker's
 *		registration.
 */
#include "presence.h"
#include "compat.h"

#include <sys/stat.h>
#include <unistd.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

PG_MODULE_MAGIC;

char	   *presence_broadcast_channel = NULL;
char	   *presence_worker_id_guc = NULL;
char	   *presence_database = NULL;
int			presence_delivery = PRESENCE_DELIVERY_BROADCAST;
int			presence_sweep_interval_ms = 1000;
int			presence_worker_ttl_s = 90;
int			presence_batch_size = 1000;
double		presence_notify_queue_warning = 0.5;
int			presence_stalled_listener_timeout_ms = 0;
/* The key itself: read from presence.signing_key_file, never a GUC. */
const char *presence_signing_key = "";
static char *presence_signing_key_file = NULL;

/*
 * bound_worker_exits counts exits of backends that registered a
 * connection-bound worker, so the background worker checks backend
 * liveness only after one has gone.  worker_stopped: whether the
 * background worker last exited because it was asked to (SIGTERM), which
 * its launcher reads to leave it stopped.  server_run is drawn at random
 * each time shared memory is made: at the server's start and at each
 * restart after a crash (the epoch's part that such a restart changes).
 */
typedef struct PresenceShared
{
	pg_atomic_uint64 bound_worker_exits;
	pg_atomic_uint32 worker_stopped;
	uint64		server_run;
} PresenceShared;

static PresenceShared *presence_shared = NULL;

static const struct config_enum_entry delivery_options[] = {
	{"broadcast", PRESENCE_DELIVERY_BROADCAST, false},
	{"topic", PRESENCE_DELIVERY_TOPIC, false},
	{"both", PRESENCE_DELIVERY_BOTH, false},
	{NULL, 0, false}
};

#if PG_VERSION_NUM >= 150000
static shmem_request_hook_type prev_shmem_request_hook = NULL;
#endif
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

void		_PG_init(void);

/*
 * A channel must be a valid identifier-length name: NOTIFY rejects longer.
 */
static bool
check_channel(char **newval, void **extra, GucSource source)
{
	if (*newval == NULL || (*newval)[0] == '\0')
	{
		GUC_check_errdetail("presence.channel must not be empty.");
		return false;
	}
	if (strlen(*newval) >= NAMEDATALEN)
	{
		GUC_check_errdetail("presence.channel must be shorter than %d bytes.",
							NAMEDATALEN);
		return false;
	}
	return true;
}

/*
 * A worker id appears in every diff, so it has the same limit as a topic.
 */
static bool
check_worker_id(char **newval, void **extra, GucSource source)
{
	if (*newval != NULL && strlen(*newval) > PRESENCE_MAX_NAME_BYTES)
	{
		GUC_check_errdetail("presence.worker_id must be at most %d bytes.",
							PRESENCE_MAX_NAME_BYTES);
		return false;
	}
	return true;
}

static void
presence_shmem_request(void)
{
#if PG_VERSION_NUM >= 150000
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
#endif
	RequestAddinShmemSpace(MAXALIGN(sizeof(PresenceShared)));
	RequestAddinShmemSpace(MAXALIGN(presence_listeners_shmem_size()));
}

static void
presence_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	presence_shared = ShmemInitStruct("presence", sizeof(PresenceShared),
									  &found);
	if (!found)
	{
		pg_atomic_init_u64(&presence_shared->bound_worker_exits, 0);
		pg_atomic_init_u32(&presence_shared->worker_stopped, 0);
		if (!pg_strong_random(&presence_shared->server_run,
							  sizeof(presence_shared->server_run)))
			presence_shared->server_run = (uint64) GetCurrentTimestamp();
	}
	presence_listeners_shmem_init();
	LWLockRelease(AddinShmemInitLock);
}

/*
 * Called at the exit of a backend that owned a connection-bound worker.
 */
void
presence_note_bound_worker_exit(void)
{
	if (presence_shared != NULL)
		pg_atomic_fetch_add_u64(&presence_shared->bound_worker_exits, 1);
}

/*
 * How many such backends have exited since the server started.
 */
uint64
presence_bound_worker_exits(void)
{
	if (presence_shared == NULL)
		return 0;
	return pg_atomic_read_u64(&presence_shared->bound_worker_exits);
}

/*
 * A number that changes at each start of the server, and, when preloaded,
 * at each restart after a crash, which loses the WAL not yet written.
 * Without shared memory the postmaster's start time is all there is.
 */
uint64
presence_server_run(void)
{
	if (presence_shared == NULL)
		return (uint64) PgStartTime;
	return presence_shared->server_run;
}

/*
 * The longest signing key read; HMAC-SHA256 gains nothing from more than
 * its 64-byte block.
 */
#define SIGNING_KEY_MAX_BYTES 1024

/*
 * The key in `path`: its bytes, without one trailing newline.  NULL, with
 * the reason in GUC_check_errdetail, when the file cannot be read, is
 * empty or too long, or other users may read it (as for ssl_key_file:
 * owned by the server's user with no group or other access, or by root
 * with group read at most).  Messages name the file, never its contents.
 */
static char *
read_signing_key(const char *path)
{
	struct stat st;
	FILE	   *file;
	char		buf[SIGNING_KEY_MAX_BYTES + 2];
	size_t		len;
	char	   *key;

	if (stat(path, &st) != 0)
	{
		GUC_check_errdetail("could not stat file \"%s\": %m", path);
		return NULL;
	}
	if (!S_ISREG(st.st_mode) ||
		(st.st_uid == geteuid() && (st.st_mode & (S_IRWXG | S_IRWXO))) ||
		(st.st_uid == 0 && (st.st_mode & (S_IWGRP | S_IXGRP | S_IRWXO))) ||
		(st.st_uid != geteuid() && st.st_uid != 0))
	{
		GUC_check_errdetail("File \"%s\" must be a regular file owned by the database user with permissions u=rw (0600) or less, or owned by root with u=rw,g=r (0640) or less.", path);
		return NULL;
	}
	file = AllocateFile(path, "r");
	if (file == NULL)
	{
		GUC_check_errdetail("could not open file \"%s\": %m", path);
		return NULL;
	}
	len = fread(buf, 1, sizeof(buf) - 1, file);
	FreeFile(file);
	if (len > 0 && buf[len - 1] == '\n')
		len--;
	if (len > 0 && buf[len - 1] == '\r')
		len--;
	if (len == 0 || len > SIGNING_KEY_MAX_BYTES || memchr(buf, '\0', len) != NULL)
	{
		GUC_check_errdetail("File \"%s\" must hold a key of 1 to %d bytes (one trailing newline is ignored).",
							path, SIGNING_KEY_MAX_BYTES);
		return NULL;
	}
	key = presence_guc_malloc(len + 1);	/* the GUC machinery frees it */
	if (key == NULL)
		return NULL;
	memcpy(key, buf, len);
	key[len] = '\0';
	explicit_bzero(buf, sizeof(buf));
	return key;
}

/*
 * presence.signing_key_file's check hook: reads the key (at startup, at
 * library load and at every reload, so a key written into the same file
 * is taken at the next reload) into the setting's extra; an unreadable file
 * keeps the previous key and is logged by the GUC machinery with the
 * file's name only.
 */
static bool
check_signing_key_file(char **newval, void **extra, GucSource source)
{
	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	*extra = read_signing_key(*newval);
	return *extra != NULL;
}

static void
assign_signing_key_file(const char *newval, void *extra)
{
	presence_signing_key = extra != NULL ? (const char *) extra : "";
}

/*
 * Set when the background worker exits on request, cleared by the launcher
 * before it starts one.
 */
void
presence_set_worker_stopped(bool stopped)
{
	if (presence_shared != NULL)
		pg_atomic_write_u32(&presence_shared->worker_stopped, stopped ? 1 : 0);
}

bool
presence_worker_stopped(void)
{
	return presence_shared != NULL &&
		pg_atomic_read_u32(&presence_shared->worker_stopped) != 0;
}

static void
reserve_guc_prefix(void)
{
#if PG_VERSION_NUM >= 150000
	MarkGUCPrefixReserved("presence");
#else
	EmitWarningsOnPlaceholders("presence");
#endif
}

void
_PG_init(void)
{
	DefineCustomStringVariable("presence.channel",
							   "NOTIFY channel that carries presence diffs.",
							   NULL,
							   &presence_broadcast_channel,
							   "tep_broadcast",
							   PGC_SUSET, 0,
							   check_channel, NULL, NULL);

	DefineCustomEnumVariable("presence.delivery",
							 "Channels a diff goes on: presence.channel (broadcast), its topic's own (topic), or both.",
							 "A transaction's diffs follow the setting in force at its first diff.",
							 &presence_delivery,
							 PRESENCE_DELIVERY_BROADCAST,
							 delivery_options,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("presence.worker_id",
							   "This session's app worker id; empty means bound to the connection.",
							   NULL,
							   &presence_worker_id_guc,
							   "",
							   PGC_USERSET, 0,
							   check_worker_id, NULL, NULL);

	presence_register_change_callbacks();
	presence_define_history_gucs();
	presence_define_retention_gucs();

	DefineCustomIntVariable("presence.sweep_interval",
							"Time between background worker ticks.",
							NULL,
							&presence_sweep_interval_ms,
							1000, 10, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("presence.worker_ttl",
							"Heartbeat age after which a Tep-written worker row is dead.",
							NULL,
							&presence_worker_ttl_s,
							90, 1, 86400 * 365,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("presence.batch_size",
							"Most rows the background worker changes per transaction.",
							NULL,
							&presence_batch_size,
							1000, 1, 1000000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomRealVariable("presence.notify_queue_warning",
							 "Fraction of the NOTIFY queue in use above which the background worker warns.",
							 "One WARNING per crossing, naming the sessions most likely holding the queue's tail.",
							 &presence_notify_queue_warning,
							 0.5, 0.000001, 1.0,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("presence.stalled_listener_timeout",
							"Time a session may hold the NOTIFY queue above presence.notify_queue_warning while blocked writing to its client before the background worker terminates it; 0 never.",
							NULL,
							&presence_stalled_listener_timeout_ms,
							0, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomStringVariable("presence.signing_key_file",
							   "File holding the secret under which every diff is signed with HMAC-SHA256; empty: unsigned.",
							   "Read at startup and at each reload; the file must be readable by the server alone (as ssl_key_file).",
							   &presence_signing_key_file,
							   "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   check_signing_key_file, assign_signing_key_file,
							   NULL);

	if (!process_shared_preload_libraries_in_progress)
	{
		reserve_guc_prefix();
		return;
	}

	/* A postmaster setting can only be defined while preloading. */
	DefineCustomStringVariable("presence.database",
							   "Database the presence background worker serves.",
							   NULL,
							   &presence_database,
							   "postgres",
							   PGC_POSTMASTER, 0,
							   NULL, NULL, NULL);

#if PG_VERSION_NUM >= 150000
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = presence_shmem_request;
#else
	presence_shmem_request();
#endif
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = presence_shmem_startup;

	presence_register_bgworker();
	presence_watch_listens();
	reserve_guc_prefix();
}
