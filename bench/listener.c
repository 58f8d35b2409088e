/*
 * listener.c -- a small LISTEN client for the presence benchmarks.
 *
 * LISTENs on a channel (default tep_broadcast), decodes every payload in
 * Tep's wire format "<N>:presence:<topic><json>", checks that seq counts
 * 1, 2, 3 ... per topic with no gap and no reordering, and records when
 * each diff arrived.  With -L the diff's "note" must hold the sender's
 * clock as decimal epoch microseconds (the driver sets it with
 * presence_set_status(..., note => clock_timestamp() in us, ...)), and the
 * listener reports the latency percentiles from that send time to
 * receipt.
 *
 *   cc -O2 -I$(pg_config --includedir) -o listener listener.c \
 *      -L$(pg_config --libdir) -lpq
 *   ./listener [-c conninfo] [-C channel]... [-F channel-file] [-L]
 *              [-o raw.tsv] [-r ready-file] [-i idle-seconds]
 *              [-d max-seconds] [-n stop-after-count]
 *
 * -C may be given more than once, and -F names a file of channels, one a
 * line (a gateway in topic delivery LISTENs to its topics' channels).
 *
 * Connection parameters come from conninfo or the PG* environment.  The
 * listener touches the ready file once LISTEN is in force, and stops after
 * idle seconds without a diff (once one arrived), after max seconds, after
 * the given count, or on SIGINT/SIGTERM.  It prints one summary line of
 * key=value pairs on stdout; with -o it writes "recv_us topic seq kind
 * latency_us" per diff.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <time.h>
#include <unistd.h>

#include "libpq-fe.h"

static volatile sig_atomic_t stop_requested = 0;

static void
on_signal(int signo)
{
	(void) signo;
	stop_requested = 1;
}

static int64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- per-topic last seq: open addressing on the topic string ---------- */

typedef struct TopicSlot
{
	char	   *topic;
	int64_t		last_seq;
} TopicSlot;

static TopicSlot *slots = NULL;
static size_t nslots = 0;
static size_t nused = 0;

static uint64_t
hash_str(const char *s, size_t len)
{
	uint64_t	h = 1469598103934665603ULL;

	for (size_t i = 0; i < len; i++)
	{
		h ^= (unsigned char) s[i];
		h *= 1099511628211ULL;
	}
	return h;
}

static TopicSlot *
topic_slot(const char *topic, size_t len)
{
	size_t		i;

	if (nused * 2 >= nslots)
	{
		TopicSlot  *old = slots;
		size_t		oldn = nslots;

		nslots = oldn ? oldn * 2 : 1024;
		slots = calloc(nslots, sizeof(TopicSlot));
		if (slots == NULL)
		{
			perror("calloc");
			exit(2);
		}
		for (size_t j = 0; j < oldn; j++)
			if (old[j].topic)
			{
				size_t		k = hash_str(old[j].topic, strlen(old[j].topic)) & (nslots - 1);

				while (slots[k].topic)
					k = (k + 1) & (nslots - 1);
				slots[k] = old[j];
			}
		free(old);
	}
	i = hash_str(topic, len) & (nslots - 1);
	while (slots[i].topic)
	{
		if (strlen(slots[i].topic) == len && memcmp(slots[i].topic, topic, len) == 0)
			return &slots[i];
		i = (i + 1) & (nslots - 1);
	}
	slots[i].topic = strndup(topic, len);
	slots[i].last_seq = -1;
	nused++;
	return &slots[i];
}

/* ---- a tolerant reader of the few JSON members we need ----------------- */

/*
 * Find the value of top-level member `key` in a flat JSON object: returns a
 * pointer to the first character of the value (after ':' and blanks), or
 * NULL.  Skips over strings so a key name inside a value does not match.
 */
static const char *
json_member(const char *json, const char *key)
{
	size_t		klen = strlen(key);
	const char *p = json;
	int			expect_key = 0;

	if (*p != '{')
		return NULL;
	p++;
	expect_key = 1;
	while (*p)
	{
		if (*p == '"')
		{
			const char *start = ++p;

			while (*p && *p != '"')
			{
				if (*p == '\\' && p[1])
					p++;
				p++;
			}
			if (!*p)
				return NULL;
			if (expect_key && (size_t) (p - start) == klen &&
				memcmp(start, key, klen) == 0)
			{
				p++;
				while (*p == ' ')
					p++;
				if (*p != ':')
					return NULL;
				p++;
				while (*p == ' ')
					p++;
				return p;
			}
			p++;
			continue;
		}
		if (*p == ':')
			expect_key = 0;
		else if (*p == ',')
			expect_key = 1;
		p++;
	}
	return NULL;
}

static int
json_int(const char *json, const char *key, int64_t *out)
{
	const char *v = json_member(json, key);
	char	   *end;

	if (v == NULL)
		return 0;
	errno = 0;
	*out = strtoll(v, &end, 10);
	return end != v && errno == 0;
}

/* A string member's raw (unescaped) text; only for digits and plain words. */
static int
json_plain_string(const char *json, const char *key, char *out, size_t outsz)
{
	const char *v = json_member(json, key);
	size_t		n = 0;

	if (v == NULL || *v != '"')
		return 0;
	v++;
	while (*v && *v != '"' && *v != '\\' && n + 1 < outsz)
		out[n++] = *v++;
	out[n] = '\0';
	return *v == '"';
}

/* Characters in a UTF-8 string of len bytes. */
static size_t
utf8_chars(const char *s, size_t len)
{
	size_t		n = 0;

	for (size_t i = 0; i < len; i++)
		if (((unsigned char) s[i] & 0xC0) != 0x80)
			n++;
	return n;
}

/* ---- statistics -------------------------------------------------------- */

static int64_t *lat = NULL;
static size_t nlat = 0;
static size_t lat_cap = 0;

static void
add_latency(int64_t us)
{
	if (nlat == lat_cap)
	{
		lat_cap = lat_cap ? lat_cap * 2 : 65536;
		lat = realloc(lat, lat_cap * sizeof(int64_t));
		if (lat == NULL)
		{
			perror("realloc");
			exit(2);
		}
	}
	lat[nlat++] = us;
}

static int
cmp_i64(const void *a, const void *b)
{
	int64_t		x = *(const int64_t *) a;
	int64_t		y = *(const int64_t *) b;

	return (x > y) - (x < y);
}

static int64_t
percentile(double p)
{
	size_t		idx;

	if (nlat == 0)
		return -1;
	idx = (size_t) (p / 100.0 * (double) (nlat - 1) + 0.5);
	return lat[idx];
}

static void
usage(const char *prog)
{
	fprintf(stderr,
			"usage: %s [-c conninfo] [-C channel] [-L] [-o raw.tsv] [-r ready-file]\n"
			"          [-i idle-seconds] [-d max-seconds] [-n count]\n", prog);
	exit(2);
}

#define lengthof_channels(a) (sizeof(a) / sizeof((a)[0]))

/* Append the channels of a file, one a line, to channels[]. */
static int
read_channels(const char *path, const char **channels, int n, int max)
{
	FILE	   *f = fopen(path, "r");
	char		line[256];

	if (f == NULL)
	{
		perror(path);
		exit(1);
	}
	while (n < max && fgets(line, sizeof(line), f))
	{
		line[strcspn(line, "\n")] = '\0';
		if (line[0] != '\0')
			channels[n++] = strdup(line);
	}
	fclose(f);
	return n;
}

int
main(int argc, char **argv)
{
	const char *conninfo = "";
	const char *channel = "tep_broadcast";
	const char *raw_path = NULL;
	const char *ready_path = NULL;
	double		idle_s = 3.0;
	double		max_s = 600.0;
	long		stop_count = 0;
	int			latency_mode = 0;
	int			opt;
	PGconn	   *conn;
	PGresult   *res;
	const char *channels[4096];
	int			nchannels = 0;
	FILE	   *raw = NULL;
	int64_t		started, first_us = 0, last_us = 0;
	long		received = 0, decode_errors = 0, seq_gaps = 0, seq_backwards = 0;
	long		no_latency = 0;
	int			sock;

	while ((opt = getopt(argc, argv, "c:C:F:Lo:r:i:d:n:")) != -1)
	{
		switch (opt)
		{
			case 'c':
				conninfo = optarg;
				break;
			case 'C':
				if (nchannels < (int) lengthof_channels(channels))
					channels[nchannels++] = optarg;
				break;
			case 'F':
				nchannels = read_channels(optarg, channels, nchannels,
										  (int) lengthof_channels(channels));
				break;
			case 'L':
				latency_mode = 1;
				break;
			case 'o':
				raw_path = optarg;
				break;
			case 'r':
				ready_path = optarg;
				break;
			case 'i':
				idle_s = atof(optarg);
				break;
			case 'd':
				max_s = atof(optarg);
				break;
			case 'n':
				stop_count = atol(optarg);
				break;
			default:
				usage(argv[0]);
		}
	}

	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);

	conn = PQconnectdb(conninfo);
	if (PQstatus(conn) != CONNECTION_OK)
	{
		fprintf(stderr, "listener: %s", PQerrorMessage(conn));
		return 1;
	}
	if (nchannels == 0)
		channels[nchannels++] = channel;
	for (int i = 0; i < nchannels; i++)
	{
		char	   *ident = PQescapeIdentifier(conn, channels[i], strlen(channels[i]));
		char	   *listen_sql = malloc(strlen(ident) + 16);

		sprintf(listen_sql, "LISTEN %s", ident);
		PQfreemem(ident);
		res = PQexec(conn, listen_sql);
		if (PQresultStatus(res) != PGRES_COMMAND_OK)
		{
			fprintf(stderr, "listener: LISTEN failed: %s", PQerrorMessage(conn));
			return 1;
		}
		PQclear(res);
		free(listen_sql);
	}

	if (raw_path)
	{
		raw = fopen(raw_path, "w");
		if (raw == NULL)
		{
			perror(raw_path);
			return 1;
		}
	}
	if (ready_path)
	{
		FILE	   *f = fopen(ready_path, "w");

		if (f == NULL)
		{
			perror(ready_path);
			return 1;
		}
		fclose(f);
	}

	sock = PQsocket(conn);
	started = now_us();
	while (!stop_requested)
	{
		fd_set		in;
		struct timeval tv = {0, 100000};	/* wake up to check limits */
		int64_t		t;
		PGnotify   *n;
		int			rc;

		FD_ZERO(&in);
		FD_SET(sock, &in);
		rc = select(sock + 1, &in, NULL, NULL, &tv);
		if (rc < 0 && errno != EINTR)
		{
			perror("select");
			return 1;
		}
		t = now_us();
		if (rc > 0 && !PQconsumeInput(conn))
		{
			fprintf(stderr, "listener: %s", PQerrorMessage(conn));
			return 1;
		}
		while ((n = PQnotifies(conn)) != NULL)
		{
			const char *p = n->extra;
			char	   *colon;
			long		dchars;
			const char *dtopic, *json, *topic;
			size_t		blen, topic_len;
			int64_t		seq = -1, sent = -1;
			char		kind[16] = "";

			received++;
			if (first_us == 0)
				first_us = t;
			last_us = t;

			/* <N>:<dtopic><json>, N characters of dtopic */
			dchars = strtol(p, &colon, 10);
			if (colon == p || *colon != ':' || dchars <= 0)
			{
				decode_errors++;
				PQfreemem(n);
				continue;
			}
			dtopic = colon + 1;
			/* walk dchars UTF-8 characters */
			blen = 0;
			for (long c = 0; c < dchars && dtopic[blen]; c++)
			{
				blen++;
				while (dtopic[blen] && ((unsigned char) dtopic[blen] & 0xC0) == 0x80)
					blen++;
			}
			json = dtopic + blen;
			if (utf8_chars(dtopic, blen) != (size_t) dchars ||
				strncmp(dtopic, "presence:", 9) != 0 || *json != '{' ||
				json[strlen(json) - 1] != '}' ||
				!json_int(json, "seq", &seq) ||
				!json_plain_string(json, "kind", kind, sizeof(kind)))
			{
				decode_errors++;
				PQfreemem(n);
				continue;
			}
			topic = dtopic + 9;
			topic_len = blen - 9;
			{
				TopicSlot  *slot = topic_slot(topic, topic_len);

				if (slot->last_seq >= 0)
				{
					if (seq <= slot->last_seq)
						seq_backwards++;
					else if (seq != slot->last_seq + 1)
						seq_gaps++;
				}
				if (seq > slot->last_seq)
					slot->last_seq = seq;
			}
			if (latency_mode)
			{
				char		note[32];

				if (json_plain_string(json, "note", note, sizeof(note)) &&
					note[0] >= '0' && note[0] <= '9')
				{
					sent = strtoll(note, NULL, 10);
					add_latency(t - sent);
				}
				else
					no_latency++;
			}
			if (raw)
				fprintf(raw, "%lld\t%.*s\t%lld\t%s\t%lld\n", (long long) t,
						(int) topic_len, topic, (long long) seq, kind,
						(long long) (sent >= 0 ? t - sent : -1));
			PQfreemem(n);
		}
		if (PQstatus(conn) != CONNECTION_OK)
		{
			fprintf(stderr, "listener: connection lost\n");
			return 1;
		}
		if (stop_count > 0 && received >= stop_count)
			break;
		if ((t - started) / 1e6 >= max_s)
			break;
		if (received > 0 && (t - last_us) / 1e6 >= idle_s)
			break;
	}

	if (raw)
		fclose(raw);
	qsort(lat, nlat, sizeof(int64_t), cmp_i64);
	printf("received=%ld decode_errors=%ld seq_gaps=%ld seq_backwards=%ld topics=%zu",
		   received, decode_errors, seq_gaps, seq_backwards, nused);
	if (received > 1 && last_us > first_us)
		printf(" rate_per_s=%.0f", (received - 1) / ((last_us - first_us) / 1e6));
	if (latency_mode)
		printf(" latency_n=%zu no_latency=%ld p50_us=%lld p90_us=%lld p99_us=%lld p999_us=%lld max_us=%lld",
			   nlat, no_latency, (long long) percentile(50), (long long) percentile(90),
			   (long long) percentile(99), (long long) percentile(99.9),
			   (long long) (nlat ? lat[nlat - 1] : -1));
	printf("\n");
	PQfinish(conn);
	return 0;
}
