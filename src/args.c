/*
 * args.c
 *		Argument checks of SPEC's "Bad input" and the session's worker
 *		identity.  Every check raises before anything changes.
 */
#include "presence.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "datatype/timestamp.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

static char *connection_worker_id = NULL;
static bool connection_exit_watched = false;

/*
 * A text argument as a C string: ERROR 22004 when NULL, 22023 when empty
 * (unless allowed) or longer than max_bytes.
 */
char *
presence_text_arg(FunctionCallInfo fcinfo, int argno, const char *argname,
				  bool allow_empty, int max_bytes)
{
	text	   *value;
	int			bytes;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be NULL", argname)));
	value = PG_GETARG_TEXT_PP(argno);
	bytes = VARSIZE_ANY_EXHDR(value);
	if (bytes == 0 && !allow_empty)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be empty", argname)));
	if (bytes > max_bytes)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be at most %d bytes", argname, max_bytes),
				 errdetail("It is %d bytes.", bytes)));
	return text_to_cstring(value);
}

char *
presence_topic_arg(FunctionCallInfo fcinfo, int argno)
{
	return presence_text_arg(fcinfo, argno, "topic", false,
							 PRESENCE_MAX_NAME_BYTES);
}

int32
presence_fd_arg(FunctionCallInfo fcinfo, int argno)
{
	int32		fd;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("fd must not be NULL")));
	fd = PG_GETARG_INT32(argno);
	if (fd < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("fd must not be negative"),
				 errdetail("It is %d.", fd)));
	return fd;
}

/*
 * SPEC's rule for kind and agent_id: NULL when they agree, else the reason.
 */
const char *
presence_kind_violation(const char *kind, const char *agent_id)
{
	if (strcmp(kind, "human") == 0)
		return agent_id[0] == '\0' ? NULL :
			"agent_id must be empty when kind is 'human'";
	if (strcmp(kind, "agent_for") == 0)
		return agent_id[0] != '\0' ? NULL :
			"agent_id must not be empty when kind is 'agent_for'";
	return "kind must be 'human' or 'agent_for'";
}

bool
presence_state_is_valid(const char *state)
{
	return strcmp(state, "available") == 0 || strcmp(state, "busy") == 0 ||
		strcmp(state, "blocked") == 0;
}

/*
 * The rules of tep_presence's CHECK (presence_entry_is_valid), for a row
 * written without the executor: ERROR as ExecConstraints would report the
 * CHECK failing, or 22023 for a row whose diffs could not be sent.
 */
void
presence_check_entry_rules(const PresenceEntry *entry, const char *relname)
{
	if (presence_kind_violation(entry->kind, entry->agent_id) != NULL ||
		!presence_state_is_valid(entry->status_state) ||
		presence_exceeds_limits(entry))
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("new row for relation \"%s\" violates check constraint \"%s\"",
						relname, "tep_presence_entry_check")));
	presence_check_diff_fits(entry);
}

/*
 * Whether a row is over the byte limits of SPEC "Bad input" (topic,
 * worker_id, principal_id and agent_id 255, note 1024), which the CHECK
 * applies to every writer, Tep's direct writes included.
 */
bool
presence_exceeds_limits(const PresenceEntry *entry)
{
	return strlen(entry->topic) > PRESENCE_MAX_NAME_BYTES ||
		strlen(entry->worker_id) > PRESENCE_MAX_NAME_BYTES ||
		strlen(entry->principal_id) > PRESENCE_MAX_NAME_BYTES ||
		strlen(entry->agent_id) > PRESENCE_MAX_NAME_BYTES ||
		strlen(entry->status_note) > PRESENCE_MAX_NOTE_BYTES;
}

/*
 * Epoch seconds of the transaction's start: since_ts and the sweep's "now".
 */
int64
presence_now_s(void)
{
	return (int64) timestamptz_to_time_t(GetCurrentTransactionStartTimestamp());
}

/*
 * This connection's own worker id, from its backend pid and start time.
 */
const char *
presence_connection_worker(void)
{
	if (connection_worker_id == NULL)
		connection_worker_id =
			MemoryContextStrdup(TopMemoryContext,
								psprintf("pg-%d-" INT64_FORMAT, MyProcPid,
										 (int64) timestamptz_to_time_t(MyStartTimestamp)));
	return connection_worker_id;
}

bool
presence_is_connection_worker(const char *worker_id)
{
	return strcmp(worker_id, presence_connection_worker()) == 0;
}

/*
 * The worker_id argument, or when NULL the session's worker:
 * presence.worker_id if set, else the connection's own id.
 */
char *
presence_worker_arg(FunctionCallInfo fcinfo, int argno)
{
	if (!PG_ARGISNULL(argno))
		return presence_text_arg(fcinfo, argno, "worker_id", false,
								 PRESENCE_MAX_NAME_BYTES);
	if (presence_worker_id_guc != NULL && presence_worker_id_guc[0] != '\0')
		return pstrdup(presence_worker_id_guc);
	return pstrdup(presence_connection_worker());
}

static int64
check_not_negative(int64 value, const char *argname)
{
	if (value < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be negative", argname),
				 errdetail("It is " INT64_FORMAT ".", value)));
	return value;
}

/*
 * A time in epoch seconds: ERROR 22004 when NULL, 22023 when negative.
 */
int64
presence_seconds_arg(FunctionCallInfo fcinfo, int argno, const char *argname)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be NULL", argname)));
	return check_not_negative(PG_GETARG_INT64(argno), argname);
}

/*
 * An expiry at most this far ahead: anything later is a mistake (until_ts in
 * milliseconds is some 55,000 years ahead), not a status meant to last.
 */
#define MAX_UNTIL_AHEAD_S	((int64) 3155760000)	/* 100 years of 365.25 days */
#define MAX_UNTIL_AHEAD		"100 years"

/* until_ts in epoch seconds: ERROR 22023 when more than 100 years ahead. */
static int64
check_until_ahead(int64 until_ts)
{
	int64		now_s = presence_now_s();

	if (until_ts > now_s + MAX_UNTIL_AHEAD_S)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("until_ts must be at most %s ahead", MAX_UNTIL_AHEAD),
				 errdetail("It is " INT64_FORMAT "; now is " INT64_FORMAT ".",
						   until_ts, now_s),
				 errhint("until_ts is in epoch seconds, not milliseconds (0 = never); or pass a timestamptz or an interval.")));
	return until_ts;
}

/*
 * until_ts in epoch seconds (0 = never): ERROR 22004 when NULL, 22023 when
 * negative or more than 100 years ahead.
 */
int64
presence_until_arg(FunctionCallInfo fcinfo, int argno)
{
	return check_until_ahead(presence_seconds_arg(fcinfo, argno, "until_ts"));
}

/*
 * until_ts as text: what a client sends as an untyped parameter (node-postgres
 * does), read as 1.0 read it, as a bigint of epoch seconds.
 */
int64
presence_until_text_arg(FunctionCallInfo fcinfo, int argno)
{
	int64		until_ts;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("until_ts must not be NULL")));
	until_ts = DatumGetInt64(DirectFunctionCall1(int8in,
												 CStringGetDatum(TextDatumGetCString(PG_GETARG_DATUM(argno)))));
	return check_until_ahead(check_not_negative(until_ts, "until_ts"));
}

/*
 * A timestamptz as epoch seconds, rounded up so that a status never ends
 * before the time given.  ERROR 22023 unless it is after the epoch (0 would
 * mean never) and at most 100 years ahead.
 */
static int64
until_from_timestamptz(TimestampTz until)
{
	int64		epoch_us;

	if (TIMESTAMP_IS_NOEND(until) ||
		until > GetCurrentTransactionStartTimestamp() +
		MAX_UNTIL_AHEAD_S * USECS_PER_SEC)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("until_ts must be at most %s ahead", MAX_UNTIL_AHEAD),
				 errdetail("It is %s.", timestamptz_to_str(until))));
	epoch_us = until + (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY;
	if (TIMESTAMP_IS_NOBEGIN(until) || epoch_us <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("until_ts must be after 1970-01-01 00:00:00+00"),
				 errdetail("It is %s.", timestamptz_to_str(until))));
	return (epoch_us + USECS_PER_SEC - 1) / USECS_PER_SEC;
}

/*
 * until_ts given as a timestamptz: ERROR 22004 when NULL, 22023 when not
 * after the epoch or more than 100 years ahead.
 */
int64
presence_until_timestamptz_arg(FunctionCallInfo fcinfo, int argno)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("until_ts must not be NULL")));
	return until_from_timestamptz(PG_GETARG_TIMESTAMPTZ(argno));
}

/*
 * until_ts given as an interval from the transaction's start: ERROR 22004
 * when NULL, 22023 unless positive and at most 100 years.
 */
int64
presence_until_interval_arg(FunctionCallInfo fcinfo, int argno)
{
	Interval   *ahead;
	Interval	zero = {0};
	Interval   *most;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("until_ts must not be NULL")));
	ahead = PG_GETARG_INTERVAL_P(argno);
	most = DatumGetIntervalP(DirectFunctionCall3(interval_in,
												 CStringGetDatum(MAX_UNTIL_AHEAD),
												 ObjectIdGetDatum(InvalidOid),
												 Int32GetDatum(-1)));
	if (DatumGetInt32(DirectFunctionCall2(interval_cmp, IntervalPGetDatum(ahead),
										  IntervalPGetDatum(&zero))) <= 0 ||
		DatumGetInt32(DirectFunctionCall2(interval_cmp, IntervalPGetDatum(ahead),
										  IntervalPGetDatum(most))) > 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("until_ts must be a positive interval of at most %s",
						MAX_UNTIL_AHEAD),
				 errdetail("It is %s.",
						   DatumGetCString(DirectFunctionCall1(interval_out,
															   IntervalPGetDatum(ahead))))));
	return until_from_timestamptz(DatumGetTimestampTz(
		DirectFunctionCall2(timestamptz_pl_interval,
							TimestampTzGetDatum(GetCurrentTransactionStartTimestamp()),
							IntervalPGetDatum(ahead))));
}

/* The role the current SQL function acts for (presence_call_as_owner). */
static Oid	current_caller = InvalidOid;

/*
 * The role a call acts for: the role PostgreSQL checked the function's
 * EXECUTE privilege for, GetUserId() as the function began (the session's
 * current role, or the owner of a SECURITY DEFINER function that called
 * it).  Outside an SQL function (the background worker), GetUserId().
 */
Oid
presence_caller(void)
{
	return OidIsValid(current_caller) ? current_caller : GetUserId();
}

/*
 * Run an SQL function's body as the owner of the extension's tables, with
 * the caller remembered for presence_caller (PRESENCE_FUNCTION).  A change
 * inside a security-restricted operation (ANALYZE, autovacuum, REFRESH
 * MATERIALIZED VIEW or CREATE INDEX running a table owner's expression) is
 * refused: whose rights it would act with is not the session's to give.
 * An error restores the user at (sub)transaction abort, as for SECURITY
 * DEFINER.
 */
Datum
presence_call_as_owner(PGFunction body, FunctionCallInfo fcinfo,
					   bool changes, const char *name)
{
	Oid			saved_caller = current_caller;
	Oid			saved_user;
	int			saved_context;
	Datum		result;

	if (changes && InSecurityRestrictedOperation())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("cannot call %s in a security-restricted operation", name),
				 errdetail("ANALYZE, VACUUM, CREATE INDEX, REINDEX and REFRESH MATERIALIZED VIEW run a table owner's code this way.")));
	GetUserIdAndSecContext(&saved_user, &saved_context);
	current_caller = saved_user;
	SetUserIdAndSecContext(presence_owner(),
						   saved_context | SECURITY_LOCAL_USERID_CHANGE);
	PG_TRY();
	{
		result = body(fcinfo);
	}
	PG_FINALLY();
	{
		current_caller = saved_caller;
	}
	PG_END_TRY();
	SetUserIdAndSecContext(saved_user, saved_context);
	return result;
}

/*
 * Refuse a call that changes other roles' rows, or locks the history,
 * inside a transaction block (explicit, or several statements in one
 * query string), as VACUUM is refused: the transaction would hold those
 * rows or that lock from their owners, their leaves and the background
 * worker for as long as it stays open.  Superusers may (they can hold any
 * lock anyway); the background worker does not come here.
 */
void
presence_refuse_in_transaction_block(const char *name)
{
	if (IsTransactionBlock() && !superuser_arg(presence_caller()))
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("%s cannot run inside a transaction block", name),
				 errdetail("It changes or locks other roles' rows, which an open transaction would hold from them and from the background worker."),
				 errhint("Call it on its own, as a statement outside BEGIN ... COMMIT.")));
}

/*
 * Whether `id` has the form of a connection-bound id, pg-<pid>-<start>.
 */
static bool
is_connection_id_form(const char *id)
{
	const char *p = id;

	if (strncmp(p, "pg-", 3) != 0)
		return false;
	p += 3;
	if (!isdigit((unsigned char) *p))
		return false;
	while (isdigit((unsigned char) *p))
		p++;
	if (*p++ != '-' || !isdigit((unsigned char) *p))
		return false;
	while (isdigit((unsigned char) *p))
		p++;
	return *p == '\0';
}

/*
 * A connection-bound id may be acted on only from its own connection (the
 * background worker prunes it without asking), so no other session can
 * take over or drop a live connection's entries: ERROR 42501 for another
 * connection's id, unless the caller is a superuser.  Checked on the id's
 * form, registered or not, so that nobody can claim a connection's id
 * before the connection first uses it.
 */
void
presence_check_connection_id(const char *worker_id)
{
	if (is_connection_id_form(worker_id) &&
		!presence_is_connection_worker(worker_id) &&
		!superuser_arg(presence_caller()))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for worker_id \"%s\"", worker_id),
				 errdetail("A connection-bound worker id can be used only from its own connection.")));
}

/*
 * Refuse a caller without the privileges of the worker's owner (ERROR
 * 42501 naming the worker and its owner).  InvalidOid: no owner (a 1.0
 * row), anyone granted the functions may use it.  has_privs_of_role is
 * true at once for the owner itself and for superusers.
 */
void
presence_check_worker_owner(const char *worker_id, Oid owner)
{
	char	   *owner_name;

	if (!OidIsValid(owner) || has_privs_of_role(presence_caller(), owner))
		return;
	owner_name = GetUserNameFromId(owner, true);
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied for worker_id \"%s\"", worker_id),
			 owner_name ?
			 errdetail("The worker belongs to role \"%s\".", owner_name) :
			 errdetail("The worker belongs to a dropped role (oid %u).", owner),
			 errhint("Only its owner, roles with the owner's privileges and superusers may use it.")));
}

static void
connection_exit_callback(int code, Datum arg)
{
	presence_note_bound_worker_exit();
}

/*
 * Tell the background worker when this backend exits, so it prunes the
 * connection-bound worker without waiting for a full liveness check.
 */
void
presence_watch_connection_exit(void)
{
	if (connection_exit_watched)
		return;
	on_shmem_exit(connection_exit_callback, (Datum) 0);
	connection_exit_watched = true;
}
