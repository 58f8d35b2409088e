# Helpers shared by the integration tests: the PostgreSQL::Test::Cluster
# each test file starts for itself, connections to it, a LISTEN connection
# that timestamps every diff as it arrives and decodes Tep's wire format,
# the server log (and the check every file ends with), and timing.
#
# Each t/*.t file is independent: it starts its own cluster(s) with
# presence_node, so it runs alone, in any order:
#
#   make installcheck PROVE_TESTS=test/integration/t/07_bulk_prune.t
package PresenceTest;

use strict;
use warnings;

use DBI;
use DBD::Pg;
use Exporter 'import';
use IO::Select;
use JSON::PP;
use POSIX ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils ();
use Test::More;
use Time::HiRes qw(time sleep);

our @EXPORT = qw(
  presence_node presence_standby node connect_db connect_retry wait_disconnected dsn
  worker_pid wait_worker_pid set_gucs reset_gucs
  log_path log_offset log_since worker_log_problems server_log_ok
  decode_diff diff_of ms now_s
  spawn_client child_exit expiry_and_prune_work state_dir
);

our @DIFF_KEYS = qw(kind topic principal ekind agent_id fd since state note
  until_ts seq worker_id epoch);

my $json = JSON::PP->new;

# Clusters ---------------------------------------------------------------

my %nodes;           # name => PostgreSQL::Test::Cluster
my $default_node;    # the first one started: connect_db() without cluster =>

# What every presence test cluster has: UTF-8, the old suite's log line
# prefix (worker_log_problems matches '%m [%p] %b '), crash restarts on
# (PostgreSQL::Test::Cluster turns them off; t/10 kills the worker), no
# statement logging, room for the churn writers.
my @BASE_CONF = (
	"log_line_prefix = '%m [%p] %b '",
	'log_statement = none',
	'log_min_messages = info',
	'restart_after_crash = on',
	'max_connections = 100',
);

# The preloaded cluster most files use: sweep every 200 ms, prune in
# batches of 1000.
my @PRELOAD_CONF = (
	"shared_preload_libraries = 'presence'",
	"presence.sweep_interval = '200ms'",
	'presence.batch_size = 1000',
);

# presence_node([NAME], %options): initdb and start a cluster of this test
# file's own, NAME 'main' by default; the first one started is the one
# connect_db() and the log helpers use when not told otherwise
# (cluster => NAME).  Options: preload => 0 (no shared_preload_libraries,
# no presence.* settings), conf => [lines], create_extension => 0 (no
# CREATE EXTENSION presence in database postgres; it is created by
# default), streaming => 1 (a primary: presence_standby can follow it).
# Returns the PostgreSQL::Test::Cluster.
sub presence_node {
	my $name = @_ % 2 ? shift : 'main';
	my (%o) = @_;
	BAIL_OUT('PostgreSQL will not initdb as root: run bash test/integration/run.sh '
		  . '(it runs these as the postgres user), or make installcheck as another user') if $> == 0;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(extra => [ '-E', 'UTF8', '--locale=C.UTF-8' ],
		allows_streaming => $o{streaming} // 0);
	$node->append_conf('postgresql.conf', join("\n", @BASE_CONF,
			(($o{preload} // 1) ? @PRELOAD_CONF : ()), @{ $o{conf} // [] }) . "\n");
	$node->start;
	$nodes{$name} = $node;
	$default_node //= $name;
	if ($o{create_extension} // 1) {
		my $dbh = connect_db(cluster => $name);
		$dbh->do('CREATE EXTENSION presence');
		$dbh->disconnect;
	}
	return $node;
}

# presence_standby(NAME, PRIMARY): an asynchronous streaming standby of the
# cluster named PRIMARY (started with streaming => 1), from a fresh base
# backup; started and caught up.  Returns the PostgreSQL::Test::Cluster.
sub presence_standby {
	my ($name, $primary_name) = @_;
	my $primary = node($primary_name);
	$primary->backup("$name-base");
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init_from_backup($primary, "$name-base", has_streaming => 1);
	$node->start;
	$primary->wait_for_catchup($node);
	$nodes{$name} = $node;
	return $node;
}

sub node {
	my ($which) = @_;
	$which //= $default_node;
	die "no cluster started (presence_node)" unless defined $which;
	return $nodes{$which} // die "no cluster named $which";
}

# The superuser is the OS user that ran initdb (postgres under run_all.sh).
sub dsn {
	my (%o) = @_;
	my $node = node($o{cluster});
	my $db = $o{db} // 'postgres';
	return sprintf('dbi:Pg:dbname=%s;host=%s;port=%s', $db, $node->host, $node->port);
}

# A scratch directory of this test file (removed at its end).
my $state_dir;
sub state_dir { $state_dir //= PostgreSQL::Test::Utils::tempdir('state') }

# A forked child ends with this: no END blocks (PostgreSQL::Test::Cluster's
# would stop the clusters, Test::More's would report), no destructors.
sub child_exit {
	my ($code) = @_;
	POSIX::_exit($code // 0);
}

# connect_db(%o): a session of the superuser, or of role user => NAME
# (trust authentication), on cluster => NAME.
sub connect_db {
	my (%o) = @_;
	my $dbh = DBI->connect(dsn(%o), $o{user} // '', '',
		{ AutoCommit => 1, RaiseError => 1, PrintError => 0, PrintWarn => 0,
		  AutoInactiveDestroy => 1 })
	  or die "connect: $DBI::errstr";
	$dbh->do("SET application_name = 'presence-integ'");
	return $dbh;
}

# Connect, retrying while the server restarts (crash recovery).
sub connect_retry {
	my (%o) = @_;
	my $deadline = time + ($o{timeout} // 30);
	while (1) {
		my $dbh = eval { connect_db(%o) };
		return $dbh if $dbh;
		die $@ if time > $deadline;
		sleep 0.05;
	}
}

# Wait until the server has closed $dbh's session (a crash restart has
# begun): a connection made before that could be accepted and then killed
# by the same restart.
sub wait_disconnected {
	my ($dbh, $timeout) = @_;
	my $deadline = time + ($timeout // 10);
	while (time < $deadline) {
		return 1 unless eval { $dbh->do('SELECT 1'); 1 };
		sleep 0.01;
	}
	return 0;
}

sub ms { sprintf '%.0f', $_[0] * 1000 }
sub now_s { int(time) }

sub worker_pid {
	my ($dbh) = @_;
	my ($pid) = $dbh->selectrow_array(
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'presence worker'");
	return $pid;
}

sub wait_worker_pid {
	my ($dbh, $timeout, $not) = @_;
	my $deadline = time + $timeout;
	while (time < $deadline) {
		my $pid = worker_pid($dbh);
		return $pid if $pid && (!$not || $pid != $not);
		sleep 0.02;
	}
	return undef;
}

# ALTER SYSTEM SET each name => value, then reload.
sub set_gucs {
	my ($dbh, %gucs) = @_;
	for my $name (sort keys %gucs) {
		$dbh->do("ALTER SYSTEM SET $name = " . $dbh->quote($gucs{$name}));
	}
	$dbh->do('SELECT pg_reload_conf()');
}

sub reset_gucs {
	my ($dbh, @names) = @_;
	$dbh->do("ALTER SYSTEM RESET $_") for @names;
	$dbh->do('SELECT pg_reload_conf()');
}

# Server log -------------------------------------------------------------

sub log_path { node($_[0])->logfile }
sub log_offset { -s log_path($_[0]) // 0 }

sub log_since {
	my ($offset, $which) = @_;
	open my $fh, '<', log_path($which) or die "open log: $!";
	seek $fh, $offset // 0, 0;
	local $/;
	my $text = <$fh> // '';
	close $fh;
	return $text;
}

# Log lines of the presence worker (log_line_prefix '%m [%p] %b ') at
# WARNING or worse, plus any crash of a server process.
sub worker_log_problems {
	my ($text) = @_;
	return grep {
		/ presence worker (WARNING|ERROR|FATAL|PANIC):/
		  || /terminated by signal|was terminated|exited with exit code [^01]|PANIC/
	} split /\n/, $text;
}

# The check every test file ends with (it was t/19, over the whole run of
# a shared cluster): the server log of cluster => NAME (the default one)
# has one "presence worker started" line per worker start, no restart
# other than the deliberate kills -9 (kills => [worker pids]), no worker
# error, no crash except those kills; the worker runs at the end.  starts
# => N: how many starts to expect (1 + kills by default); warnings => qr//:
# worker WARNINGs the test expects.  7 assertions.
sub server_log_ok {
	my (%o) = @_;
	my $which = $o{cluster};
	my @kills = @{ $o{kills} // [] };
	my $want_starts = $o{starts} // 1 + @kills;
	my $dbh = connect_db(cluster => $which);
	my @lines = split /\n/, log_since(0, $which);
	my $name = node($which)->name;

	my @started = grep { /presence worker started/ } @lines;
	my %start_pids = map { /\[(\d+)\] presence worker LOG:  presence worker started/ ? ($1 => 1) : () } @started;
	my %worker_pids = map { /\[(\d+)\] presence worker / ? ($1 => 1) : () } @lines;
	$worker_pids{ worker_pid($dbh) // 0 } = 1;
	delete $worker_pids{0};
	is(scalar @started, scalar(keys %start_pids),
		"$name log: each start line comes from a different worker process (one per start)");
	is_deeply([sort keys %start_pids], [sort keys %worker_pids],
		"$name log: every worker process logged exactly one start line");
	is(scalar @started, $want_starts,
		"$name log: $want_starts start(s): the first + one per deliberate kill -9 (" . scalar(@kills) . '), no other restart');
	diag("$name: presence worker starts: " . scalar @started);

	my @errors = grep { / presence worker (ERROR|FATAL|PANIC|WARNING):/
		  && !($o{warnings} && / presence worker WARNING:/ && /$o{warnings}/) } @lines;
	is_deeply(\@errors, [], "$name log: the worker never logged an error");
	my @exits = grep { /background worker "presence worker" \(PID (\d+)\) exited/ } @lines;
	is_deeply(\@exits, [], "$name log: the worker never exited on its own");

	# test/lib/cluster.sh's cluster_log_has_crash, minus the deliberate kills.
	my $kill_re = join '|', map { quotemeta } @kills;
	my @crash = grep {
		/terminated by signal|was terminated|server process .* exited with exit code [^01]|PANIC/
		  && !(@kills && /background worker "presence worker" \(PID (?:$kill_re)\) was terminated by signal 9: Killed/)
	} @lines;
	is_deeply(\@crash, [], "$name log: no crash except the deliberate kill -9");
	ok(worker_pid($dbh), "$name log: the worker is still running at the end");
	$dbh->disconnect;
}

# Diffs ------------------------------------------------------------------

# <N>:presence:<topic><json>: N counts the characters of the dtopic.
sub decode_diff {
	my ($raw) = @_;
	$raw =~ /^(\d+):/ or die "bad diff (no length): $raw";
	my $n = $1;
	my $rest = substr($raw, length($n) + 1);
	my $dtopic = substr($rest, 0, $n);
	my $body = substr($rest, $n);
	my $obj = $json->decode($body);
	$obj->{_n} = $n;
	$obj->{_dtopic} = $dtopic;
	$obj->{_json} = $body;
	return $obj;
}

# The decoded diff of a queued notification (decoded once).
sub diff_of {
	my ($item) = @_;
	$item->{diff} //= decode_diff($item->{raw});
	return $item->{diff};
}

# A client in a child process: connects, runs the statements, reports
# its backend pid, then waits to be killed.  Returns (child pid, backend pid).
sub spawn_client {
	my (@sql) = @_;
	pipe(my $r, my $w) or die "pipe: $!";
	my $child = fork // die "fork: $!";
	if ($child == 0) {
		close $r;
		my $dbh = connect_db();
		$dbh->do($_) for @sql;
		syswrite $w, "$dbh->{pg_pid}\n";
		close $w;
		sleep 1 while 1;
		child_exit(0);
	}
	close $w;
	my $line = <$r>;
	close $r;
	die "client failed to start" unless defined $line;
	chomp $line;
	return ($child, $line);
}

# The worker still does its job after a disruption (`when` names it in the
# assertions): on a new connection (`connect`: connect_db options), a
# status expiring in 1 s is reset within sweep_interval + 0.5 s, and once
# `admin` terminates the connection its entry leaves within 2 x
# sweep_interval; both seen by `listener`.  `start` registers the worker
# with presence_worker_start() first; otherwise the track does.
sub expiry_and_prune_work {
	my (%o) = @_;
	my ($l, $admin, $when, $topic, $fd) = @o{qw(listener admin when topic fd)};
	my $c = connect_db(%{ $o{connect} // {} });
	$c->selectrow_array('SELECT presence_worker_start()') if $o{start};
	$c->selectrow_array('SELECT presence_track(?, ?, ?)', undef, $topic, $fd, "user:$fd");
	my $wid = $admin->selectrow_array('SELECT worker_id FROM tep_presence_worker WHERE backend_pid = ?',
		undef, $c->{pg_pid});
	my $until = now_s() + 1;
	$c->selectrow_array(q{SELECT presence_set_status(?, ?, 'busy', '', ?)}, undef, $topic, $fd, $until);
	my $r = $l->wait_for(PresenceTest::Listener::match(kind => 'status', worker_id => $wid, fd => $fd,
			state => 'available'), $until + 0.7 + 1 - time);
	ok($r, "$when expiry works") and do {
		diag(sprintf 'reset latency %s ms (%s)', ms($r->{t} - $until), $when);
		cmp_ok($r->{t} - $until, '<=', 0.7, '  within sweep_interval + 0.5 s');
	};
	my $t0 = time;
	$admin->selectrow_array('SELECT pg_terminate_backend(?)', undef, $c->{pg_pid});
	$r = $l->wait_for(PresenceTest::Listener::match(kind => 'leave', worker_id => $wid), 2);
	ok($r, "$when a terminated connection is pruned") and do {
		diag(sprintf 'leave latency %s ms (%s)', ms($r->{t} - $t0), $when);
		cmp_ok($r->{t} - $t0, '<=', 0.4, '  within 2 x sweep_interval');
	};
}

# A LISTEN connection on presence.channel (tep_broadcast). Every
# notification is queued with its arrival time; wait on the listener (not
# sleep) so arrival times stay exact.
package PresenceTest::Listener;

use strict;
use warnings;
use IO::Select;
use Time::HiRes qw(time);

sub new {
	my ($class, %o) = @_;
	my $self = bless { opts => \%o, queue => [], received => 0 }, $class;
	$self->connect;
	return $self;
}

sub connect {
	my ($self) = @_;
	my %o = %{ $self->{opts} };
	$self->{dbh} = $o{retry} ? PresenceTest::connect_retry(%o)
	  : PresenceTest::connect_db(%o);
	$self->{dbh}->do('LISTEN ' . ($o{channel} // 'tep_broadcast'));
	return $self;
}

sub dbh { $_[0]{dbh} }

# Read whatever has arrived, waiting up to $timeout seconds for something.
sub pump {
	my ($self, $timeout) = @_;
	my $dbh = $self->{dbh};
	my $sel = IO::Select->new($dbh->{pg_socket});
	my $got = 0;
	if ($sel->can_read($timeout // 0)) {
		my $t = time;
		while (my $n = $dbh->pg_notifies) {
			push @{ $self->{queue} }, { t => $t, raw => $n->[2], pid => $n->[1], channel => $n->[0] };
			$got++;
		}
	}
	$self->{received} += $got;
	return $got;
}

# Sleep for $secs while receiving.
sub pause {
	my ($self, $secs) = @_;
	my $end = time + $secs;
	while ((my $left = $end - time) > 0) {
		$self->pump($left);
	}
}

# Queued notifications matching $pred (removed from the queue), waiting up
# to $timeout s until $count matched.  Returns the matches, oldest first.
sub collect {
	my ($self, $pred, $count, $timeout) = @_;
	my $deadline = time + $timeout;
	my @got;
	while (1) {
		my @keep;
		for my $item (@{ $self->{queue} }) {
			if (@got < $count && $pred->($item)) { push @got, $item }
			else { push @keep, $item }
		}
		$self->{queue} = \@keep;
		last if @got >= $count;
		my $left = $deadline - time;
		last if $left <= 0;
		$self->pump($left);
	}
	return @got;
}

sub wait_for {
	my ($self, $pred, $timeout) = @_;
	my ($item) = $self->collect($pred, 1, $timeout);
	return $item;
}

# Drop everything received so far.
sub drain {
	my ($self) = @_;
	$self->pump(0.05);
	my @q = @{ $self->{queue} };
	$self->{queue} = [];
	return @q;
}

# Predicate helpers: match decoded diffs by fields.
sub match {
	my (%want) = @_;
	return sub {
		my ($item) = @_;
		my $d = PresenceTest::diff_of($item);
		for my $k (keys %want) {
			my $v = $d->{$k};
			return 0 unless defined $v;
			if (ref $want{$k} eq 'Regexp') { return 0 unless $v =~ $want{$k} }
			else { return 0 unless $v eq $want{$k} }
		}
		return 1;
	};
}

1;
