# Helpers of the shard suite's Perl files (test/shards/run.sh starts the
# clusters and sets PRESENCE_SHARDS_DIR, PRESENCE_SHARDS_BASE,
# PRESENCE_SHARDS_N, PG_BINDIR): connections to the proxy and the shards,
# LISTEN connections that decode Tep's wire format, a per-topic replica
# built from a snapshot plus diffs, and killing and restarting a shard.
package ShardTest;

use strict;
use warnings;

use DBI;
use DBD::Pg;
use Exporter 'import';
use IO::Select;
use JSON::PP;
use POSIX ();
use Time::HiRes qw(time sleep);

our @EXPORT = qw(proxy_dbh shard_dbh shard_connstr connstr_dsn shard_of
  listener poll_diffs replica_new replica_snapshot replica_apply
  replica_rows global_rows kill9_shard start_shard child_exit);

my $dir = $ENV{PRESENCE_SHARDS_DIR} // die 'PRESENCE_SHARDS_DIR not set';
my $base = $ENV{PRESENCE_SHARDS_BASE} // die 'PRESENCE_SHARDS_BASE not set';
my $json = JSON::PP->new;

sub _connect {
	my ($dsn) = @_;
	my $dbh = DBI->connect($dsn, 'postgres', '',
		{ AutoCommit => 1, RaiseError => 1, PrintError => 0, PrintWarn => 0,
		  AutoInactiveDestroy => 1 }) or die "connect $dsn: $DBI::errstr";
	$dbh->do('SET client_min_messages = warning');
	return $dbh;
}

sub proxy_dbh { _connect("dbi:Pg:dbname=proxy;host=$dir/proxy/sock;port=$base") }

sub shard_connstr {
	my ($i) = @_;
	return sprintf('host=%s/shard%d/sock port=%d dbname=presence',
		$dir, $i, $base + 1 + $i);
}

# A libpq string of presence_shard(s) as a DBI dsn.
sub connstr_dsn {
	my ($c) = @_;
	my %kv = map { split /=/, $_, 2 } split ' ', $c;
	delete $kv{user};
	return 'dbi:Pg:' . join(';', map { "$_=$kv{$_}" } sort keys %kv);
}

# shard_dbh(I, timeout => S): retries while the shard (re)starts.
sub shard_dbh {
	my ($i, %o) = @_;
	my $deadline = time + ($o{timeout} // 0);
	while (1) {
		my $dbh = eval { _connect(connstr_dsn(shard_connstr($i))) };
		return $dbh if $dbh;
		die $@ if time >= $deadline;
		sleep 0.1;
	}
}

# The shard index of each topic, from presence_shard on the proxy.
sub shard_of {
	my ($proxy, @topics) = @_;
	my %idx = map { shard_connstr($_) => $_ } 0 .. $ENV{PRESENCE_SHARDS_N} - 1;
	my %of;
	for my $t (@topics) {
		my ($c) = $proxy->selectrow_array('SELECT presence_shard(?)', undef, $t);
		$of{$t} = $idx{$c} // die "presence_shard($t) = $c: not a shard";
	}
	return \%of;
}

# listener(I): a LISTEN connection on shard I's presence.channel.
sub listener {
	my ($i, %o) = @_;
	my $dbh = shard_dbh($i, %o);
	$dbh->do('LISTEN tep_broadcast');
	return { shard => $i, dbh => $dbh };
}

# poll_diffs(LISTENER, TIMEOUT): the diffs that arrive within TIMEOUT s
# (returns at the first batch), each a hash with its shard.
sub poll_diffs {
	my ($l, $timeout) = @_;
	my @out;
	my $sel = IO::Select->new($l->{dbh}->{pg_socket});
	$sel->can_read($timeout);
	while (my $n = $l->{dbh}->pg_notifies) {
		my (undef, undef, $payload) = @$n;
		$payload =~ /^(\d+):/ or die "bad payload $payload";
		my $rest = substr($payload, length($1) + 1);
		my $d = $json->decode(substr($rest, $1));
		$d->{dtopic} = substr($rest, 0, $1);
		$d->{shard} = $l->{shard};
		push @out, $d;
	}
	return @out;
}

# A replica of some topics: per topic its seq and entries by worker|fd,
# and the problems seen (seq gaps, diffs on the wrong shard).
sub replica_new { return { topics => {}, problems => [] } }

sub _key { "$_[0]{worker_id}|$_[0]{fd}" }

# replica_snapshot(R, PROXY, TOPIC): (re)starts TOPIC from its snapshot.
sub replica_snapshot {
	my ($r, $proxy, $topic) = @_;
	my ($s) = $proxy->selectrow_array('SELECT presence_snapshot(?)', undef, $topic);
	$s = $json->decode($s);
	my %e = map { (_key($_) => $_) } @{ $s->{entries} };
	$r->{topics}{$topic} = { seq => $s->{seq}, entries => \%e };
}

# replica_apply(R, DIFF, SHARD_OF): applies a diff newer than the topic's
# seq; a seq that is not the next one is a gap.
sub replica_apply {
	my ($r, $d, $shard_of) = @_;
	my $t = $r->{topics}{ $d->{topic} } or return;
	push @{ $r->{problems} }, "$d->{topic}: diff on shard $d->{shard}, topic on $shard_of->{$d->{topic}}"
	  if defined $shard_of && $shard_of->{ $d->{topic} } != $d->{shard};
	return if $d->{seq} <= $t->{seq};
	push @{ $r->{problems} }, "$d->{topic}: seq $d->{seq} after $t->{seq}"
	  if $d->{seq} != $t->{seq} + 1;
	$t->{seq} = $d->{seq};
	if ($d->{kind} eq 'leave') {
		delete $t->{entries}{ _key($d) };
	} else {
		$t->{entries}{ _key($d) } = $d;
	}
}

sub _row { join '|', map { $_[0]{$_} } qw(worker_id fd principal ekind agent_id state note until_ts) }

sub replica_rows {
	my ($r, $topic) = @_;
	return [ sort map { _row($_) } values %{ $r->{topics}{$topic}{entries} } ];
}

# The topic's rows through the proxy, in the replica's shape.
sub global_rows {
	my ($proxy, $topic) = @_;
	my $rows = $proxy->selectall_arrayref(
		'SELECT worker_id, fd, principal_id AS principal, kind AS ekind, agent_id,
		        status_state AS state, status_note AS note, status_until AS until_ts
		   FROM presence_list_global(?)', { Slice => {} }, $topic);
	return [ sort map { _row($_) } @$rows ];
}

# kill9_shard(I): SIGKILL to shard I's postmaster and every child of it.
sub kill9_shard {
	my ($i) = @_;
	open my $fh, '<', "$dir/shard$i/data/postmaster.pid" or die "postmaster.pid: $!";
	chomp(my $pm = <$fh>);
	close $fh;
	my @kids = grep { _ppid($_) == $pm } map { m{^/proc/(\d+)$} ? $1 : () } glob '/proc/[0-9]*';
	kill 'KILL', $pm, @kids;
	for (1 .. 100) {
		last unless kill 0, $pm, @kids;
		sleep 0.05;
	}
	return $pm;
}

sub _ppid {
	open my $fh, '<', "/proc/$_[0]/stat" or return -1;
	my $stat = <$fh>;
	return $stat =~ /\) \S+ (\d+)/ ? $1 : -1;
}

# start_shard(I): pg_ctl start (as postgres when root).
sub start_shard {
	my ($i) = @_;
	my @cmd = ("$ENV{PG_BINDIR}/pg_ctl", '-D', "$dir/shard$i/data", '-l',
		"$dir/shard$i/server.log", '-w', '-t', '60', 'start');
	unshift @cmd, 'runuser', '-u', 'postgres', '--' if $> == 0;
	my $pid = fork // die "fork: $!";
	if (!$pid) {
		chdir '/';
		open STDOUT, '>', '/dev/null';
		exec @cmd or POSIX::_exit(127);
	}
	waitpid $pid, 0;
	return $? == 0;
}

# A forked child ends with this: no END blocks, no destructors.
sub child_exit { POSIX::_exit($_[0] // 0) }

1;
